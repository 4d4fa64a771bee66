// An independent verifier of sharing-audit's log, written against Go's checksum-database
// packages (golang.org/x/mod/sumdb/note and tlog): if these accept what the Python side
// signs and proves, the formats are the standard ones, byte for byte.
//
// Input (stdin, JSON): the log's verifier key, a signed checkpoint, the leaves' bytes,
// inclusion proofs and consistency proofs; or, instead of leaves and proofs, the log's
// C2SP tiles and entry bundles by path, from which tlog's own tile reader proves every
// entry and every older tree, and from which it proves the trees given (prove_from)
// consistent with the checkpoint. Output: "ok", or the first failure and exit 1.
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type inclusion struct {
	Index int64    `json:"index"`
	Proof []string `json:"proof"`
}

type consistency struct {
	Old     int64    `json:"old"`
	OldRoot string   `json:"old_root"`
	Proof   []string `json:"proof"`
}

type input struct {
	Vkey        string            `json:"vkey"`
	Checkpoint  string            `json:"checkpoint"`
	Note64      string            `json:"checkpoint_base64"` // the note's bytes exactly, when not UTF-8
	Leaves      []string          `json:"leaves"`
	Inclusion   []inclusion       `json:"inclusion"`
	Consistency []consistency     `json:"consistency"`
	Tiles       map[string]string `json:"tiles"`
	ProveFrom   []consistency     `json:"prove_from"` // older trees to prove from the tiles
}

// c2spTiles reads tiles as tlog asks for them (tile/8/L/N) from C2SP paths (tile/L/N).
type c2spTiles map[string]string

func (c c2spTiles) Height() int { return 8 }

func (c c2spTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		path := strings.Replace(t.Path(), "tile/8/", "tile/", 1)
		text, ok := c[path]
		if !ok {
			return nil, fmt.Errorf("no tile %s", path)
		}
		data, err := base64.StdEncoding.DecodeString(text)
		if err != nil {
			return nil, err
		}
		out[i] = data
	}
	return out, nil
}

func (c c2spTiles) SaveTiles(tiles []tlog.Tile, data [][]byte) {}

// bundled is entry i from the C2SP entry bundle holding it (uint16 length prefixes).
func bundled(c c2spTiles, size, i int64) []byte {
	t := tlog.Tile{H: 8, L: 0, N: i / 256, W: 256}
	if rest := size - t.N*256; rest < 256 {
		t.W = int(rest)
	}
	path := strings.Replace(t.Path(), "tile/8/0/", "tile/entries/", 1)
	data, err := base64.StdEncoding.DecodeString(c[path])
	if err != nil || c[path] == "" {
		fail("no entry bundle %s", path)
	}
	for k := int64(0); ; k++ {
		if len(data) < 2 {
			fail("bundle %s ends before entry %d", path, i)
		}
		length := int(data[0])<<8 | int(data[1])
		if len(data) < 2+length {
			fail("bundle %s ends inside an entry", path)
		}
		if k == i%256 {
			return data[2 : 2+length]
		}
		data = data[2+length:]
	}
}

func checkTiles(tiles c2spTiles, size int64, root tlog.Hash) {
	reader := tlog.TileHashReader(tlog.Tree{N: size, Hash: root}, tiles)
	got, err := tlog.TreeHash(size, reader)
	if err != nil || got != root {
		fail("tree hash from tiles: %v", err)
	}
	for i := int64(0); i < size; i++ {
		proof, err := tlog.ProveRecord(size, i, reader)
		if err != nil {
			fail("proof of %d from tiles: %v", i, err)
		}
		if err := tlog.CheckRecord(proof, size, root, i, tlog.RecordHash(bundled(tiles, size, i))); err != nil {
			fail("entry %d from its bundle: %v", i, err)
		}
	}
	for old := int64(1); old < size; old += 37 {
		oldRoot, err := tlog.TreeHash(old, reader)
		if err != nil {
			fail("tree hash of %d from tiles: %v", old, err)
		}
		proof, err := tlog.ProveTree(size, old, reader)
		if err != nil {
			fail("consistency from %d from tiles: %v", old, err)
		}
		if err := tlog.CheckTree(proof, size, root, old, oldRoot); err != nil {
			fail("consistency from %d: %v", old, err)
		}
	}
}

func fail(format string, args ...interface{}) {
	fmt.Printf(format+"\n", args...)
	os.Exit(1)
}

func hashOf(text string) tlog.Hash {
	raw, err := base64.StdEncoding.DecodeString(text)
	if err != nil || len(raw) != tlog.HashSize {
		fail("not a hash: %q", text)
	}
	var h tlog.Hash
	copy(h[:], raw)
	return h
}

func hashes(texts []string) []tlog.Hash {
	out := make([]tlog.Hash, len(texts))
	for i, t := range texts {
		out[i] = hashOf(t)
	}
	return out
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fail("bad input: %v", err)
	}
	verifier, err := note.NewVerifier(in.Vkey)
	if err != nil {
		fail("verifier key: %v", err)
	}
	msg := []byte(in.Checkpoint)
	if in.Note64 != "" {
		if msg, err = base64.StdEncoding.DecodeString(in.Note64); err != nil {
			fail("checkpoint_base64: %v", err)
		}
	}
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		fail("checkpoint: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 || lines[0] != verifier.Name() {
		fail("checkpoint: not for origin %s", verifier.Name())
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		fail("checkpoint size: %v", err)
	}
	root := hashOf(lines[2])
	if in.Tiles != nil {
		checkTiles(c2spTiles(in.Tiles), size, root)
	}
	for _, p := range in.ProveFrom {
		reader := tlog.TileHashReader(tlog.Tree{N: size, Hash: root}, c2spTiles(in.Tiles))
		proof, err := tlog.ProveTree(size, p.Old, reader)
		if err != nil {
			fail("consistency from %d, proven from the tiles: %v", p.Old, err)
		}
		if err := tlog.CheckTree(proof, size, root, p.Old, hashOf(p.OldRoot)); err != nil {
			fail("consistency from %d to %d: %v", p.Old, size, err)
		}
	}
	for _, p := range in.Inclusion {
		leaf, err := base64.StdEncoding.DecodeString(in.Leaves[p.Index])
		if err != nil {
			fail("leaf %d: %v", p.Index, err)
		}
		if err := tlog.CheckRecord(hashes(p.Proof), size, root, p.Index, tlog.RecordHash(leaf)); err != nil {
			fail("inclusion of %d in %d: %v", p.Index, size, err)
		}
	}
	for _, p := range in.Consistency {
		if err := tlog.CheckTree(hashes(p.Proof), size, root, p.Old, hashOf(p.OldRoot)); err != nil {
			fail("consistency from %d to %d: %v", p.Old, size, err)
		}
	}
	fmt.Println("ok")
}
