# shellcheck shell=bash
# scripts/lib/debian-apt.sh - helpers shared by scripts/engine-up and scripts/make-mirrors.
# Sourced, not executed.
#
# They fetch Debian packages (.deb files) from suites other than the machine's own (trixie,
# sid, or foreign architectures) WITHOUT touching the machine's apt state: apt runs with its
# own sources, lists, cache and preferences under a private directory, and the packages are
# only downloaded (`apt-get download`), never installed.
#
# The Debian mirror is never hard-coded: it is read at run time from the machine's apt
# configuration (deb822 /etc/apt/sources.list.d/*.sources "URIs:" lines, or one-line
# /etc/apt/sources.list{,.d/*.list} entries). MAB_DEBIAN_MIRROR overrides it.

# mab_apt_install PKG... - install PKG... from the machine's own apt (after an update),
# unless all are installed already. Under a lock shared by the scripts: scripts/demo runs
# scripts/engine-up and scripts/make-mirrors --prefetch at the same time, and two apt-get
# runs would fail on each other's dpkg lock.
MAB_APT_LOCK=/var/lock/mab-apt.lock
mab_apt_install() {
    (
        flock 8
        if dpkg-query -W -f='${Status}\n' "$@" 2>/dev/null | grep -c '^install ok installed$' |
            grep -qx "$#"; then
            exit 0
        fi
        apt-get -q update && apt-get -q install -y --no-install-recommends "$@"
    ) 8>"$MAB_APT_LOCK"
}

# Print the URI of the machine's main Debian mirror (no trailing slash).
mab_debian_mirror() {
    if [[ -n "${MAB_DEBIAN_MIRROR:-}" ]]; then
        printf '%s\n' "${MAB_DEBIAN_MIRROR%/}"
        return 0
    fi
    local codename="" uri=""
    if [[ -r /etc/os-release ]]; then
        codename=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
    fi
    # deb822 stanzas: prefer a "Types: deb" stanza whose Suites holds the release codename
    # itself (not -security/-updates); fall back to any non-security stanza.
    local files=()
    shopt -s nullglob
    files=(/etc/apt/sources.list.d/*.sources)
    shopt -u nullglob
    if ((${#files[@]})); then
        uri=$(awk -v want="$codename" '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && uris != "" && uris !~ /security/) {
                    n = split(suites, s, " ")
                    for (i = 1; i <= n; i++) if (s[i] == want && best == "") best = uris
                    if (any == "") any = uris
                }
                types = ""; uris = ""; suites = ""
            }
            FNR == 1 { flush() }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            tolower($1) == "types:"  { $1 = ""; types = $0 " " }
            tolower($1) == "uris:"   { uris = $2 }
            tolower($1) == "suites:" { $1 = ""; suites = $0 }
            END { flush(); print (best != "" ? best : any) }
        ' "${files[@]}")
    fi
    # One-line format: "deb [options] URI SUITE COMPONENTS..."
    if [[ -z "$uri" ]]; then
        files=()
        [[ -r /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
        shopt -s nullglob
        files+=(/etc/apt/sources.list.d/*.list)
        shopt -u nullglob
        if ((${#files[@]})); then
            uri=$(awk -v want="$codename" '
                $1 != "deb" { next }
                {
                    i = 2
                    if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                    u = $i; s = $(i + 1)
                    if (u ~ /security/) next
                    if (s == want && best == "") best = u
                    if (any == "") any = u
                }
                END { print (best != "" ? best : any) }
            ' "${files[@]}")
        fi
    fi
    if [[ -z "$uri" ]]; then
        echo "cannot find a Debian mirror URI in /etc/apt (set MAB_DEBIAN_MIRROR)" >&2
        return 1
    fi
    printf '%s\n' "${uri%/}"
}

# mab_apt_init ROOT "SUITES" ["ARCHS"]
# Prepare a private apt tree under ROOT for the given suites (and architectures, default the
# native one) and set the global array MAB_APT_OPTS with the apt options that select it.
mab_apt_init() {
    local root=$1 suites=$2 archs=${3:-} mirror native keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    mirror=$(mab_debian_mirror)
    native=$(dpkg --print-architecture)
    [[ -n "$archs" ]] || archs=$native
    mkdir -p "$root/sources.list.d" "$root/preferences.d" "$root/lists/partial" \
        "$root/cache/archives/partial"
    local src
    src="Types: deb
URIs: $mirror
Suites: $suites
Components: main
Architectures: $archs"
    [[ -r "$keyring" ]] && src+="
Signed-By: $keyring"
    # New or changed sources: the lists must be fetched again.
    if [[ "$(cat "$root/sources.list.d/mab.sources" 2>/dev/null)" != "$src" ]]; then
        printf '%s\n' "$src" >"$root/sources.list.d/mab.sources"
        rm -f "$root/lists/.mab-updated"
    fi
    MAB_APT_OPTS=(
        -o "Dir::Etc::SourceList=/dev/null"
        -o "Dir::Etc::SourceParts=$root/sources.list.d"
        -o "Dir::Etc::Preferences=/dev/null"
        -o "Dir::Etc::PreferencesParts=$root/preferences.d"
        -o "Dir::State::Lists=$root/lists"
        -o "Dir::Cache=$root/cache"
        -o "Dir::Cache::pkgcache=$root/cache/pkgcache.bin"
        -o "Dir::Cache::srcpkgcache="
        -o "APT::Sandbox::User=root"
        -o "APT::Architectures::=$native"
    )
    local a
    for a in $archs; do
        [[ "$a" == "$native" ]] || MAB_APT_OPTS+=(-o "APT::Architectures::=$a")
    done
    MAB_APT_ROOT=$root
}

# Fetch the private lists (only if never fetched, or if $1 is "force").
mab_apt_update() {
    if [[ "${1:-}" == force || ! -e "$MAB_APT_ROOT/lists/.mab-updated" ]]; then
        apt-get "${MAB_APT_OPTS[@]}" -q update
        touch "$MAB_APT_ROOT/lists/.mab-updated"
    fi
}

# mab_apt_cached DIR SPEC - print the cached .deb in DIR for SPEC (NAME[:ARCH][/SUITE]), if any.
mab_apt_cached() {
    local dir=$1 spec=$2 name arch f
    name=${spec%%/*}
    arch=$(dpkg --print-architecture)
    if [[ "$name" == *:* ]]; then arch=${name#*:}; name=${name%%:*}; fi
    for f in "$dir/${name}_"*"_${arch}.deb" "$dir/${name}_"*"_all.deb"; do
        if [[ -f "$f" ]]; then
            printf '%s\n' "$f"
            return 0
        fi
    done
    return 1
}

# mab_apt_download DIR SPEC... - download the .debs for SPECs (NAME[:ARCH][/SUITE]) into DIR
# with one apt-get call; fetches the lists first if needed, and again (once) if the download
# fails with lists that may be stale. Needs mab_apt_init first.
mab_apt_download() {
    local dir=$1
    shift
    mkdir -p "$dir"
    mab_apt_update
    if ! (cd "$dir" && apt-get "${MAB_APT_OPTS[@]}" -q download "$@"); then
        mab_apt_update force
        (cd "$dir" && apt-get "${MAB_APT_OPTS[@]}" -q download "$@")
    fi
}

# mab_apt_fetch DIR SPEC... - make sure DIR holds one .deb per SPEC; downloads only the
# missing ones (into DIR/.download first, so an interrupted download leaves no partial file).
mab_apt_fetch() {
    local dir=$1 spec missing=()
    shift
    mkdir -p "$dir"
    for spec in "$@"; do
        mab_apt_cached "$dir" "$spec" >/dev/null || missing+=("$spec")
    done
    ((${#missing[@]})) || return 0
    rm -rf "$dir/.download"
    mab_apt_download "$dir/.download" "${missing[@]}"
    mv "$dir/.download"/*.deb "$dir"/
    rmdir "$dir/.download"
}
