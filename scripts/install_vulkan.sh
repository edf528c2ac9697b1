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
    base=$(ls /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 || true)
    uri=""; key=""
    if [[ -n "$base" ]]; then
        uri=$(awk '/^URIs:/ {print $2; exit}' "$base")
        key=$(awk '/^Signed-By:/ {print $2; exit}' "$base")
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
