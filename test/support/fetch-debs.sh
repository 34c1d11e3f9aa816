#!/usr/bin/env bash
# Fetches Debian packages of another suite (trixie, unstable) and unpacks them into a
# private root, never over the system's packages:
#   fetch-debs.sh SUITE DEST PKG...
# The archive is the one the system's own apt sources name (no host written here); the
# index lists and the .deb cache live under .tmp/apt/SUITE, so nothing of the system's apt
# state changes. Packages are chosen by name (a suite moves; pin by major version in the
# name where it matters, e.g. golang-1.26-go). Each unpacked package leaves a stamp in
# DEST/.debs listing its exact version, so a second run with the same names is a no-op.
set -euo pipefail
suite=$1; dest=$2; shift 2
cd "$(dirname "$0")/../.."
apt_dir="$PWD/.tmp/apt/$suite"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs" "$dest/.debs"

missing=()
for p in "$@"; do [ -e "$dest/.debs/$p" ] || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0

# The Debian archive the system already uses (deb822 or one-line sources).
uri=$(sed -n 's/^URIs:[[:space:]]*\(http[^ ]*\/debian\)[[:space:]]*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 || true)
if [ -z "$uri" ]; then
  uri=$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\(http[^ ]*\/debian\)[[:space:]].*/\2/p' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1 || true)
fi
[ -n "$uri" ] || { echo "fetch-debs: no Debian archive found in /etc/apt sources" >&2; exit 1; }
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
echo "deb [signed-by=$keyring] $uri $suite main" > "$apt_dir/sources.list"
opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o "Dir::State::Status=/dev/null"
  -o "APT::Get::List-Cleanup=0" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
# One index refresh per day is enough; a suite that moved since is caught by the stamp names.
if [ -z "$(find "$apt_dir/lists" -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -n1)" ]; then
  apt-get "${opts[@]}" update -qq
fi
(cd "$apt_dir/debs" && apt-get "${opts[@]}" download -qq "${missing[@]}")
for p in "${missing[@]}"; do
  # shellcheck disable=SC2012 # Debian file names have no spaces or newlines
  deb=$(ls -t "$apt_dir/debs/${p}_"*.deb | head -n1)
  dpkg -x "$deb" "$dest"
  basename "$deb" > "$dest/.debs/$p"
done
echo "fetch-debs: $suite -> $dest: ${missing[*]}"
