// apparate-prefetch-recorder: prints, in first-open order and once each, the regular files
// opened on the filesystems of the given paths, for a window. The node agent points it at
// the lazy layer mounts of an image (the stargz snapshotter's FUSE mounts) before the
// workload starts; the list it prints is what `apparate convert --prefetch` takes.
//
// It marks each path's whole filesystem (FAN_MARK_FILESYSTEM, Linux >= 4.20), not the
// mount: overlayfs reads its lower layers through private clones of their mounts, and a
// container sees its root through its own mount namespace, so a mount mark sees neither.
// Only the standard library (raw fanotify syscalls): it builds with any Go, no modules.
//
//	apparate-prefetch-recorder [-seconds N] [-max N] PATH...
//
// Output: one absolute path per line, relative to the marked path's filesystem root; a
// line "ready" on stderr once every mark is in place. Stops after -seconds, after -max
// files, or on SIGTERM/SIGINT, always after flushing what it saw.
package main

import (
	"bufio"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

const (
	fanClassNotif      = 0x0
	fanCloexec         = 0x1
	fanMarkAdd         = 0x1
	fanMarkFilesystem  = 0x100
	fanAccess          = 0x1
	fanOpen            = 0x20
	fanQOverflow       = 0x4000
	fanotifyMetaVers   = 3
	fanotifyMetaLength = 24
	atFdcwd            = -100
)

type recorder struct {
	mu    sync.Mutex
	out   *bufio.Writer
	seen  map[string]bool
	roots []string // marked paths, longest first, without a trailing slash
	max   int
	done  chan struct{}
	once  sync.Once
}

// relative strips a marked path's prefix: a file reached through a mount this process
// sees reads as that mount's path; one reached through a mount it cannot see (overlayfs'
// private clone, a container's namespace) already reads relative to that filesystem's root.
func (r *recorder) relative(p string) string {
	for _, root := range r.roots {
		if p == root {
			return "/"
		}
		if strings.HasPrefix(p, root+"/") {
			return p[len(root):]
		}
	}
	return p
}

func (r *recorder) record(fd int) {
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return
	}
	link, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil || strings.ContainsAny(link, "\n\r") || strings.HasSuffix(link, " (deleted)") {
		return
	}
	p := r.relative(link)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil || r.seen[p] {
		return
	}
	r.seen[p] = true
	fmt.Fprintln(r.out, p)
	r.out.Flush()
	if r.max > 0 && len(r.seen) >= r.max {
		r.stop()
	}
}

func (r *recorder) stop() {
	r.once.Do(func() { close(r.done) })
}

func main() {
	seconds := flag.Float64("seconds", 30, "stop after this many seconds")
	max := flag.Int("max", 0, "stop after this many distinct files (0: no limit)")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: apparate-prefetch-recorder [-seconds N] [-max N] PATH...")
		os.Exit(2)
	}
	fan, _, errno := syscall.RawSyscall(syscall.SYS_FANOTIFY_INIT, fanClassNotif|fanCloexec, uintptr(syscall.O_RDONLY|syscall.O_LARGEFILE|syscall.O_CLOEXEC), 0)
	if errno != 0 {
		fmt.Fprintf(os.Stderr, "fanotify_init: %v (needs CAP_SYS_ADMIN)\n", errno)
		os.Exit(1)
	}
	atFDCWD := atFdcwd // a variable: a negative constant does not convert to uintptr
	dirfd := uintptr(atFDCWD)
	r := &recorder{out: bufio.NewWriter(os.Stdout), seen: map[string]bool{}, max: *max, done: make(chan struct{})}
	for _, path := range flag.Args() {
		p, err := syscall.BytePtrFromString(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bad path %q\n", path)
			os.Exit(2)
		}
		if _, _, errno := syscall.Syscall6(syscall.SYS_FANOTIFY_MARK, fan, fanMarkAdd|fanMarkFilesystem, fanOpen|fanAccess, dirfd, uintptr(unsafe.Pointer(p)), 0); errno != 0 {
			fmt.Fprintf(os.Stderr, "fanotify_mark %s: %v\n", path, errno)
			os.Exit(1)
		}
		root := strings.TrimRight(path, "/")
		if root != "" {
			r.roots = append(r.roots, root)
		}
	}
	// Longest first, so that a nested marked path wins over its parent.
	for i := range r.roots {
		for j := i + 1; j < len(r.roots); j++ {
			if len(r.roots[j]) > len(r.roots[i]) {
				r.roots[i], r.roots[j] = r.roots[j], r.roots[i]
			}
		}
	}
	fmt.Fprintln(os.Stderr, "ready")

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		select {
		case <-sigs:
		case <-time.After(time.Duration(*seconds * float64(time.Second))):
		}
		r.stop()
	}()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := syscall.Read(int(fan), buf)
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "read fanotify: %v\n", err)
				r.stop()
				return
			}
			for off := 0; off+fanotifyMetaLength <= n; {
				evLen := int(binary.LittleEndian.Uint32(buf[off:]))
				vers := buf[off+4]
				mask := binary.LittleEndian.Uint64(buf[off+8:])
				fd := int(int32(binary.LittleEndian.Uint32(buf[off+16:])))
				if vers != fanotifyMetaVers || evLen < fanotifyMetaLength {
					fmt.Fprintf(os.Stderr, "fanotify metadata version %d, want %d\n", vers, fanotifyMetaVers)
					r.stop()
					return
				}
				if mask&fanQOverflow != 0 {
					fmt.Fprintln(os.Stderr, "warning: fanotify queue overflow, files missed")
				}
				if fd >= 0 {
					r.record(fd)
				}
				off += evLen
			}
		}
	}()
	<-r.done
	r.mu.Lock()
	r.out.Flush()
	fmt.Fprintf(os.Stderr, "recorded %d files\n", len(r.seen))
	r.seen = nil
	r.mu.Unlock()
}
