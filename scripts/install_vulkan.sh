#!/usr/bin/env bash
# Make sure SAPIEN (ManiSkill's simulator) finds a Vulkan device on a machine without a GPU.
#
# Debian bookworm's own Mesa (22.3) lavapipe lacks an extension SAPIEN needs; Mesa 25 from
# bookworm-backports works. We add only the backports *suite*, reusing the mirror URI and
# keyring the machine already trusts, so no mirror host is hard-coded here.
# Idempotent: does nothing when a Vulkan ICD other than old lavapipe is present, or when the
# backports driver is already installed. Exit 0 with a message when it cannot act (not root,
# no apt): ManiSkill tests will then say why they skip (and fail under CI=true).
set -euo pipefail

# "URI KEYRING" of the first deb822 stanza (in *.sources under $1) with plain bookworm among its
# Suites and main among its Components: the Debian mirror itself, whatever other repositories
# (docker, cuda, ...) sort first.
find_debian_mirror() {
    local f
    for f in "$1"/*.sources; do
        [[ -f $f && $(basename "$f") != rewardswap-backports.sources ]] || continue
        awk '
            function stanza_end() {
                if (debian && main && uri != "") { print uri, key; found = 1; exit }
                uri = ""; key = ""; debian = 0; main = 0
            }
            /^[[:space:]]*$/ { stanza_end(); next }
            /^URIs:/ { uri = $2 }
            /^Signed-By:/ { key = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm") debian = 1 }
            /^Components:/ { for (i = 2; i <= NF; i++) if ($i == "main") main = 1 }
            END { if (!found) stanza_end() }
        ' "$f" | head -n1 | grep . && return 0
    done
    return 1
}

if [[ ${1:-} == --find-mirror ]]; then  # for tests: print what would be used, change nothing
    find_debian_mirror "${2:-/etc/apt/sources.list.d}"
    exit
fi

have_backports_mesa() {
    local v
    v=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)
    [[ -n "$v" && "${v%%.*}" -ge 23 ]]
}
have_other_icd() {
    # Any non-Mesa ICD (e.g. NVIDIA) is a real device; leave it alone.
    ls /usr/share/vulkan/icd.d/ /etc/vulkan/icd.d/ 2>/dev/null | grep -qiv -e lvp -e radeon -e intel -e virtio -e '^$' -e ':'
}

if have_backports_mesa || have_other_icd; then
    exit 0
fi
if ! command -v apt-get >/dev/null || [[ $(id -u) -ne 0 ]]; then
    echo "install_vulkan: no usable Vulkan driver and cannot install one (need root + apt)." >&2
    echo "install_vulkan: install Mesa >= 23 lavapipe (mesa-vulkan-drivers from bookworm-backports) to run ManiSkill on CPU." >&2
    exit 0
fi

src=/etc/apt/sources.list.d/rewardswap-backports.sources
if [[ ! -f $src ]]; then
    uri=""; key=""
    if found=$(find_debian_mirror /etc/apt/sources.list.d); then
        read -r uri key <<<"$found"
    fi
    if [[ -z "$uri" && -f /etc/apt/sources.list ]]; then
        uri=$(awk '$1=="deb" && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list)
    fi
    if [[ -z "$uri" ]]; then
        echo "install_vulkan: could not find the Debian mirror in /etc/apt; add bookworm-backports by hand." >&2
        exit 0
    fi
    {
        echo "Types: deb"
        echo "URIs: $uri"
        echo "Suites: bookworm-backports"
        echo "Components: main"
        [[ -n "$key" ]] && echo "Signed-By: $key"
    } >"$src"
fi
echo "install_vulkan: installing Mesa lavapipe from bookworm-backports (software Vulkan for ManiSkill)..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers >/dev/null
echo "install_vulkan: done ($(dpkg-query -W -f='${Version}' mesa-vulkan-drivers))."
