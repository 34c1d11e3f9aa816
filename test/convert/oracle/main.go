// Oracle 1 for `apparate convert`: the stargz-snapshotter's own estargz library opens
// an eStargz blob, checks the TOC digest given (the manifest annotation), then reads
// every regular file through the reader and checks each chunk against the TOC's chunk
// digest with the library's verifier, and the whole file against the file digest.
// It prints one JSON object per entry (the tree as the snapshotter sees it).
//
// usage: estargz-oracle BLOB TOC_DIGEST
package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"sort"

	"github.com/containerd/stargz-snapshotter/estargz"
	digest "github.com/opencontainers/go-digest"
)

type out struct {
	Name     string            `json:"name"`
	Type     string            `json:"type"`
	Size     int64             `json:"size"`
	Mode     int64             `json:"mode"`
	LinkName string            `json:"linkName,omitempty"`
	UID      int               `json:"uid"`
	GID      int               `json:"gid"`
	DevMajor int               `json:"devMajor,omitempty"`
	DevMinor int               `json:"devMinor,omitempty"`
	Xattrs   map[string][]byte `json:"xattrs,omitempty"`
	Digest   string            `json:"digest,omitempty"`
	Chunks   int               `json:"chunks,omitempty"`
	NumLink  int               `json:"numLink,omitempty"`
}

func fail(f string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "estargz-oracle: "+f+"\n", a...)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 3 {
		fail("usage: estargz-oracle BLOB TOC_DIGEST")
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fail("%v", err)
	}
	st, err := f.Stat()
	if err != nil {
		fail("%v", err)
	}
	r, err := estargz.Open(io.NewSectionReader(f, 0, st.Size()))
	if err != nil {
		fail("open: %v", err)
	}
	want, err := digest.Parse(os.Args[2])
	if err != nil {
		fail("toc digest: %v", err)
	}
	v, err := r.VerifyTOC(want)
	if err != nil {
		fail("verify TOC: %v", err)
	}
	root, ok := r.Lookup("")
	if !ok {
		fail("no root entry")
	}
	var list []out
	var walk func(dir string, e *estargz.TOCEntry)
	walk = func(dir string, e *estargz.TOCEntry) {
		names := []string{}
		children := map[string]*estargz.TOCEntry{}
		e.ForeachChild(func(base string, c *estargz.TOCEntry) bool {
			names = append(names, base)
			children[base] = c
			return true
		})
		sort.Strings(names)
		for _, base := range names {
			c := children[base]
			name := path.Join(dir, base)
			o := out{Name: name, Type: c.Type, Size: c.Size, Mode: c.Mode, LinkName: c.LinkName, UID: c.UID, GID: c.GID,
				DevMajor: c.DevMajor, DevMinor: c.DevMinor, Xattrs: c.Xattrs, NumLink: c.NumLink}
			if c.Type == "reg" {
				// A hardlink's entry is its target's: chunks are indexed under the target name.
				o.Digest, o.Chunks = readVerified(r, v, c.Name, c)
			}
			list = append(list, o)
			if c.Type == "dir" {
				walk(name, c)
			}
		}
	}
	walk("", root)
	enc := json.NewEncoder(os.Stdout)
	for _, o := range list {
		if err := enc.Encode(o); err != nil {
			fail("%v", err)
		}
	}
}

// readVerified reads a file chunk by chunk, each checked by the library's verifier.
func readVerified(r *estargz.Reader, v estargz.TOCEntryVerifier, name string, e *estargz.TOCEntry) (string, int) {
	sr, err := r.OpenFile(name)
	if err != nil {
		fail("open file %q: %v", name, err)
	}
	whole := sha256.New()
	chunks := 0
	for off := int64(0); off < e.Size; {
		ce, ok := r.ChunkEntryForOffset(name, off)
		if !ok {
			fail("%q: no chunk at offset %d", name, off)
		}
		buf := make([]byte, ce.ChunkSize)
		if _, err := sr.ReadAt(buf, ce.ChunkOffset); err != nil && err != io.EOF {
			fail("%q: read chunk at %d: %v", name, ce.ChunkOffset, err)
		}
		cv, err := v.Verifier(ce)
		if err != nil {
			fail("%q: verifier for chunk at %d: %v", name, ce.ChunkOffset, err)
		}
		cv.Write(buf)
		if !cv.Verified() {
			fail("%q: chunk at %d does not match its chunk digest", name, ce.ChunkOffset)
		}
		whole.Write(buf)
		off = ce.ChunkOffset + ce.ChunkSize
		chunks++
	}
	got := "sha256:" + fmt.Sprintf("%x", whole.Sum(nil))
	if e.Digest != got {
		fail("%q: file digest %s, TOC says %s", name, got, e.Digest)
	}
	return got, chunks
}
