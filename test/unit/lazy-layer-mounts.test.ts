// Which mounts the prefetch recorder watches: the stargz snapshotter's FUSE layer mounts,
// from real /proc/self/mountinfo lines (the first as the test snapshotter and upstream's
// containerd-stargz-grpc write it), and nothing else.
import { describe, expect, it } from "vitest";
import { lazyLayerMounts } from "../../src/nodeagent/prefetch-recorder.js";

const ROOT = "/var/lib/containerd-stargz-grpc";
const rows: Array<[string, string, string[]]> = [
  ["a lazy layer", "44 26 0:39 / /var/lib/containerd-stargz-grpc/snapshotter/snapshots/1/fs rw,relatime - fuse.rawBridge stargz rw,user_id=0,group_id=0,allow_other", [`${ROOT}/snapshotter/snapshots/1/fs`]],
  ["an escaped space in the root", "44 26 0:39 / /var/lib/my\\040root/snapshotter/snapshots/7/fs rw - fuse.rawBridge stargz rw", []],
  ["the container's overlay (negative)", "51 26 0:45 / /run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs rw - overlay overlay rw,lowerdir=/var/lib/containerd-stargz-grpc/snapshotter/snapshots/1/fs", []],
  ["a snapshot's upper dir, not FUSE (negative)", "52 26 8:1 /x /var/lib/containerd-stargz-grpc/snapshotter/snapshots/2/fs rw - ext4 /dev/sda1 rw", []],
  ["FUSE below the snapshot folder (negative)", "53 26 0:46 / /var/lib/containerd-stargz-grpc/snapshotter/snapshots/3/fs/mnt rw - fuse.sshfs host:/ rw", []],
  ["another root's layer (negative)", "54 26 0:47 / /tmp/other/snapshotter/snapshots/1/fs rw - fuse.rawBridge stargz rw", []],
];

describe("lazyLayerMounts", () => {
  it.each(rows)("%s", (_name, line, want) => {
    expect(lazyLayerMounts(`${line}\n`, ROOT)).toEqual(want);
  });
  it("unescapes the mount point and keeps order across lines", () => {
    const text = ["44 26 0:39 / /srv/a\\040b/snapshotter/snapshots/2/fs rw - fuse.rawBridge stargz rw", "45 26 0:40 / /srv/a\\040b/snapshotter/snapshots/1/fs rw - fuse.rawBridge stargz rw"].join("\n");
    expect(lazyLayerMounts(text, "/srv/a b/")).toEqual(["/srv/a b/snapshotter/snapshots/2/fs", "/srv/a b/snapshotter/snapshots/1/fs"]);
  });
});
