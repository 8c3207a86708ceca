"""mab: multi-architecture container image builds from one declarative builds.yaml.

The pipeline runs one way: config -> plan -> render -> build -> publish -> verify -> report.
"""

__version__ = "0.1.0"
