#!/usr/bin/env bash
# Regenerates the committed seed corpus under fuzz/corpus/<target>/ and the
# log target's base image (fuzz/base/log-base.vhdx.gz).
#
# Provenance of every seed:
# - vhd_open_io, vhdx_open_io: images made by qemu-img (fixed and dynamic;
#   qemu-img makes no differencing VHD or VHDX), filled from a raw
#   image with a byte pattern written by printf at a few offsets (VHDX:
#   written by qemu-io), so that block tables and bitmaps are populated;
# - vhdx_log: byte strings from a seeded generator (python's random, seed
#   1..4); the target decodes them with `arbitrary` into log entries; the
#   base image is `qemu-img create -f vhdx -o block_size=1M,log_size=1M 8M`
#   with its trailing zeros trimmed;
# - vmdk_stream: streamOptimized VMDKs made by qemu-img convert (an empty
#   disk, and the patterned raw image);
# - ovf_descriptor: the producer-style descriptors of ovf/tests/data
#   (VMware ovftool and OVF 0.9, VirtualBox OVF 1.0 and 2.0, Hyper-V,
#   Citrix, oVirt, a VirtualSystemCollection) and a minimal one;
# - ova_package: OVAs made with GNU tar (ustar and gnu formats) of a minimal
#   descriptor, a qemu-img streamOptimized VMDK, a SHA-256 or SHA-1
#   manifest (sha256sum / sha1sum), and one signed with an openssl
#   self-signed certificate;
# - virtio_blk_queue: byte strings from a seeded generator, decoded by
#   `arbitrary` into guest memory, descriptors and ring state.
#
# Needs qemu-img, GNU tar, openssl, python3. Output is deterministic but
# for the signed OVA (a fresh key each run) and qemu-img's random GUIDs.
set -euo pipefail
cd "$(dirname "$0")"
corpus=corpus
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for t in vhd_open_io vhdx_open_io vhdx_log vmdk_stream ovf_descriptor ova_package virtio_blk_queue; do
    rm -f "$corpus/$t"/seed-*
    mkdir -p "$corpus/$t"
done

# A 4 MiB raw disk with a pattern in a few places (first sector, across the
# 1 MiB and 2 MiB block boundaries, last sector).
raw="$work/pattern.raw"
truncate -s 4M "$raw"
for off in 0 1048064 2097152 3670016 4193792; do
    printf 'vmimport fuzz seed %08d\n' "$off" | dd of="$raw" bs=1 seek="$off" conv=notrunc status=none
done

q() { qemu-img "$@" >/dev/null; }

# VHD (qemu-img calls it vpc).
q convert -f raw -O vpc -o subformat=dynamic "$raw" "$corpus/vhd_open_io/seed-dynamic.vhd"
q create -f vpc -o subformat=dynamic "$corpus/vhd_open_io/seed-dynamic-empty.vhd" 2M
q create -f vpc -o subformat=fixed "$work/fixed.vhd" 64K
cp "$work/fixed.vhd" "$corpus/vhd_open_io/seed-fixed.vhd"

# VHDX.
q create -f vhdx -o block_size=1M,log_size=1M,subformat=fixed "$corpus/vhdx_open_io/seed-fixed.vhdx" 1M
q create -f vhdx -o block_size=1M,log_size=1M "$corpus/vhdx_open_io/seed-dynamic-empty.vhdx" 64M
# qemu-img leaves the unused tail of a VHDX sparse: drop trailing zeros the
# format does not need (everything past the last non-zero 64 KiB).
trim() {
    python3 - "$1" <<'PY'
import sys
p = sys.argv[1]
d = open(p, 'rb').read()
end = len(d)
while end > 0 and not any(d[end - 65536:end]):
    end -= 65536
open(p, 'wb').write(d[:max(end, 1 << 20)])
PY
}
for f in "$corpus"/vhdx_open_io/seed-*.vhdx; do trim "$f"; done
# Data written into the trimmed empty image by qemu-io: qemu appends the
# new blocks at the end of the file, which keeps the seed small.
cp "$corpus/vhdx_open_io/seed-dynamic-empty.vhdx" "$corpus/vhdx_open_io/seed-dynamic.vhdx"
qemu-io -f vhdx -c "write -P 0x5a 0 4k" -c "write -P 0x6b 1048064 1k" \
    "$corpus/vhdx_open_io/seed-dynamic.vhdx" >/dev/null

# The log target's base image.
mkdir -p base
q create -f vhdx -o block_size=1M,log_size=1M "$work/base.vhdx" 8M
trim "$work/base.vhdx"
gzip -9n -c "$work/base.vhdx" > base/log-base.vhdx.gz

# streamOptimized VMDK.
q convert -f raw -O vmdk -o subformat=streamOptimized "$raw" "$corpus/vmdk_stream/seed-pattern.vmdk"
truncate -s 1M "$work/empty.raw"
q convert -f raw -O vmdk -o subformat=streamOptimized "$work/empty.raw" "$corpus/vmdk_stream/seed-empty.vmdk"

# OVF descriptors.
for f in ../ovf/tests/data/descriptors/*.ovf; do
    cp "$f" "$corpus/ovf_descriptor/seed-$(basename "$f")"
done
cat > "$work/vm.ovf" <<'OVF'
<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
  <References>
    <File ovf:id="file1" ovf:href="disk.vmdk"/>
  </References>
  <DiskSection>
    <Info>Virtual disks</Info>
    <Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="4" ovf:capacityAllocationUnits="byte * 2^20" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <VirtualSystem ovf:id="vm">
    <Info>A virtual machine</Info>
    <Name>vm</Name>
    <VirtualHardwareSection>
      <Info>Virtual hardware</Info>
      <Item>
        <rasd:ElementName>1 virtual CPU</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>1</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:ElementName>64 MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>64</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:ElementName>SCSI controller</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>disk0</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
OVF
cp "$work/vm.ovf" "$corpus/ovf_descriptor/seed-minimal.ovf"

# OVA packages: descriptor first, then the manifest, then the disk.
pkg="$work/pkg"
mkdir -p "$pkg"
cp "$work/vm.ovf" "$pkg/vm.ovf"
cp "$corpus/vmdk_stream/seed-pattern.vmdk" "$pkg/disk.vmdk"
(cd "$pkg" && sha256sum vm.ovf disk.vmdk | sed -E 's/^([0-9a-f]+)  (.*)$/SHA256(\2)= \1/' > vm.mf)
tar_ova() { (cd "$pkg" && tar --format="$1" --owner=0 --group=0 --numeric-owner --mtime=@0 -cf - "${@:2}"); }
tar_ova ustar vm.ovf vm.mf disk.vmdk > "$corpus/ova_package/seed-sha256-ustar.ova"
tar_ova gnu vm.ovf disk.vmdk > "$corpus/ova_package/seed-nomanifest-gnu.ova"
(cd "$pkg" && sha1sum vm.ovf disk.vmdk | sed -E 's/^([0-9a-f]+)  (.*)$/SHA1(\2)= \1/' > vm.mf)
tar_ova ustar vm.ovf vm.mf disk.vmdk > "$corpus/ova_package/seed-sha1-ustar.ova"
(cd "$pkg" && sha256sum vm.ovf disk.vmdk | sed -E 's/^([0-9a-f]+)  (.*)$/SHA256(\2)= \1/' > vm.mf)
(cd "$pkg" && openssl req -x509 -nodes -days 3650 -subj /CN=seed -newkey rsa:2048 \
    -keyout key.pem -out cert.pem 2>/dev/null \
    && openssl dgst -sha256 -sign key.pem -out sig.bin vm.mf \
    && { printf 'SHA256(vm.mf)= %s\n' "$(od -An -v -tx1 sig.bin | tr -d ' \n')"; cat cert.pem; } > vm.cert)
tar_ova ustar vm.ovf vm.mf vm.cert disk.vmdk > "$corpus/ova_package/seed-signed.ova"

# Structure-aware targets: seeded byte strings.
python3 - "$corpus" <<'PY'
import random, sys
root = sys.argv[1]
for target in ("vhdx_log", "virtio_blk_queue"):
    for seed in range(1, 5):
        r = random.Random(seed)
        data = bytes(r.getrandbits(8) for _ in range(256 * seed))
        open(f"{root}/{target}/seed-random-{seed}.bin", "wb").write(data)
PY

du -sh "$corpus"/* base
