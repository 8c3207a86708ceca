// A hello program with no dependencies, so the node template builds it offline.
console.log(`hello from node ${process.version} on ${process.arch}`);
