#!/usr/bin/env bash
# outputs: the files a backup hands out (issue 10, "every write checked") are written under
# a temporary name, checked, read back and verified before they take their name, and never
# replace an existing file without --yes; share files are never replaced at all.
#  - a backup onto a full file system (a tmpfs smaller than the archive) fails naming the
#    file and the cause, and leaves neither the archive nor its temporary file;
#  - a backup killed (-9) in the middle leaves no archive under its name; run again, it writes
#    the whole file;
#  - a second backup to the same file refuses before anything is made; the first file is
#    unchanged; with --yes it is replaced, and the new file restores;
#  - backup-n-of-m makes a missing share directory (mode 0700); a second backup into it
#    refuses before making a key (the shares already handed out still open the first
#    archive), even with --yes.
# Needs root for the tmpfs mount (CI runs as root); without it the test fails.
set -u
NAME=outputs
source "$(dirname "${BASH_SOURCE[0]}")/common.bash" "$@"
"$HSMSH" lab init > /dev/null 2>&1 || fail "lab init"
printf '1234' > "$work/pin"
BLUE="pkcs11:token=blue?pin-source=file:$work/pin"
printf '0832240A34365AEB8273A6535EF80FA99CB5FCE8D2A19EE1977CB8D664F86968\n' > "$work/c1"
printf '263FF91EE9C7A5ECC58AFFA35B4F6A5443F0DA3B5ABE60FB45260AEA8C9458F7\n' > "$work/c2"
COMPS="components=file:$work/c1,file:$work/c2"
sha() { sha256sum "$1" | cut -c1-64; }

# A good archive first: its size sizes the full file system below.
h run protectserver/backup-file side=backup token="$BLUE" file="$work/a.arc" "$COMPS" kcvs=9c1884,62a639
rc_is 0
size=$(stat -c %s "$work/a.arc")
check "the archive is whole ($size bytes) and no temporary file is left" [ "$size" -gt 8192 -a ! -e "$work/a.arc.tmp" ]

# ---- a full file system
mkdir -p "$work/full"
kb=$(( (size / 2 + 4095) / 4096 * 4 ))
if mount -t tmpfs -o size=${kb}k tmpfs "$work/full"; then
  trap 'umount "$work/full" 2> /dev/null; rm -rf "$work"' EXIT
  h run protectserver/backup-file side=backup token="$BLUE" file="$work/full/a.arc" "$COMPS" kcvs=9c1884,62a639
  rc_is 1; has err "cannot write archive $work/full/a.arc"; has err "No space left on device"
  lacks err "stack traceback"
  check "no archive on the full file system" [ ! -e "$work/full/a.arc" ]
  check "no temporary file left on it ($(ls -A "$work/full" | tr '\n' ' '))" [ -z "$(ls -A "$work/full")" ]
  lacks out "wrote"
else
  fail "cannot mount a ${kb} KiB tmpfs at $work/full (the test needs root)"
fi

# ---- a kill -9 in the middle of writing (at the 5th C_WrapKey), then the same backup again
FBLUE="pkcs11:token=blue?module-path=${HSMSH_FAULT_LIB:?run through ctest}&pin-source=file:$work/pin"
HSMSH_FAULT="kill:C_WrapKey:5" bash -c '"$0" "$@" > /dev/null 2>&1' "$HSMSH" run protectserver/backup-file \
  side=backup token="$FBLUE" file="$work/k.arc" "$COMPS" kcvs=9c1884,62a639
rc=$?; cmd="backup killed at the 5th C_WrapKey"; rc_is 137
check "a killed backup leaves no archive under its name" [ ! -e "$work/k.arc" ]
h run protectserver/backup-file side=backup token="$BLUE" file="$work/k.arc" "$COMPS" kcvs=9c1884,62a639
rc_is 0
check "the backup run again writes the whole archive, and no temporary file is left" \
  [ "$(stat -c %s "$work/k.arc")" -gt 8192 -a ! -e "$work/k.arc.tmp" ]

# ---- an existing archive
before=$(sha "$work/a.arc")
h run protectserver/backup-file side=backup token="$BLUE" file="$work/a.arc" "$COMPS" kcvs=9c1884,62a639
rc_is 1; has err "archive $work/a.arc already exists; it is never replaced without --yes"; one_line
check "the first archive is unchanged" [ "$(sha "$work/a.arc")" = "$before" ]
h run protectserver/backup-file side=backup token="$BLUE" file="$work/a.arc" "$COMPS" kcvs=9c1884,62a639 --yes
rc_is 0
check "with --yes it was replaced (a new MAC key: new bytes)" [ "$(sha "$work/a.arc")" != "$before" ]
softhsm2-util --init-token --free --label r1 --pin 1234 --so-pin 12345678 > /dev/null
h run protectserver/backup-file side=restore token="pkcs11:token=r1?pin-source=file:$work/pin" \
  file="$work/a.arc" "$COMPS" kcvs=9c1884,62a639 --yes
rc_is 0

# ---- share directories and share sets
h run protectserver/backup-n-of-m side=backup token="$BLUE" file="$work/n1.arc" shares="$work/new/dir" n=2 m=3
rc_is 0
check "the missing share directory was made, mode 0700 ($(stat -c %a "$work/new/dir" 2>&1))" \
  [ "$(stat -c %a "$work/new/dir")" = 700 ]
check "three shares in it" [ -f "$work/new/dir/share-1" -a -f "$work/new/dir/share-3" ]
shares_before=$(cat "$work"/new/dir/share-* | sha256sum)
for yes in "" --yes; do
  h run protectserver/backup-n-of-m side=backup token="$BLUE" file="$work/n2.arc" shares="$work/new/dir" n=2 m=3 $yes
  rc_is 1; has err "share 1 $work/new/dir/share-1 already exists"; one_line
  check "no second archive ($yes)" [ ! -e "$work/n2.arc" ]
  check "the shares handed out are unchanged ($yes)" [ "$(cat "$work"/new/dir/share-* | sha256sum)" = "$shares_before" ]
done
softhsm2-util --init-token --free --label r2 --pin 1234 --so-pin 12345678 > /dev/null
h run protectserver/backup-n-of-m side=restore token="pkcs11:token=r2?pin-source=file:$work/pin" \
  file="$work/n1.arc" shares="$work/new/dir/share-1,$work/new/dir/share-3" --yes
rc_is 0
h run protectserver/backup-n-of-m side=backup token="$BLUE" file="$work/n1.arc" shares="$work/other" n=2 m=3
rc_is 1; has err "archive $work/n1.arc already exists"
check "a refused backup made no share directory" [ ! -e "$work/other" ]
finish
