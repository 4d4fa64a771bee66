// An independent verifier of sharing-audit's log, written against Go's checksum-database
// packages (golang.org/x/mod/sumdb/note and tlog): if these accept what the Python side
// signs and proves, the formats are the standard ones, byte for byte.
//
// Input (stdin, JSON): the log's verifier key, a signed checkpoint, the leaves' bytes,
// inclusion proofs and consistency proofs. Output: "ok", or the first failure and exit 1.
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
	Vkey        string        `json:"vkey"`
	Checkpoint  string        `json:"checkpoint"`
	Leaves      []string      `json:"leaves"`
	Inclusion   []inclusion   `json:"inclusion"`
	Consistency []consistency `json:"consistency"`
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
	n, err := note.Open([]byte(in.Checkpoint), note.VerifierList(verifier))
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
