// An independent reader of the log's delivery receipts (sharing-audit/receipt/v1), written
// against Go's golang.org/x/mod/sumdb/note: each receipt must open with note.Open under the
// log's verifier key alone, and its text must be the eight lines of the format, its second
// line not a decimal size (so no checkpoint parser could take it for a checkpoint).
//
// Input (stdin, JSON): the log's vkey and the receipts' notes. Output: "ok <count>", or the
// first failure and exit 1.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

type input struct {
	Vkey     string   `json:"vkey"`
	Receipts []string `json:"receipts"`
}

func fail(format string, args ...interface{}) {
	fmt.Printf(format+"\n", args...)
	os.Exit(1)
}

var prefixes = []string{"origin ", "event ", "record ", "seq ", "leaf ", "decision ", "time "}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fail("input: %v", err)
	}
	verifier, err := note.NewVerifier(in.Vkey)
	if err != nil {
		fail("vkey: %v", err)
	}
	for i, text := range in.Receipts {
		n, err := note.Open([]byte(text), note.VerifierList(verifier))
		if err != nil {
			fail("receipt %d: %v", i, err)
		}
		lines := strings.Split(strings.TrimSuffix(n.Text, "\n"), "\n")
		if len(lines) != 8 || lines[0] != "sharing-audit/receipt/v1" {
			fail("receipt %d: not the eight lines of sharing-audit/receipt/v1", i)
		}
		if _, err := strconv.ParseInt(lines[1], 10, 64); err == nil {
			fail("receipt %d: its second line is a decimal size", i)
		}
		for j, prefix := range prefixes {
			if !strings.HasPrefix(lines[j+1], prefix) {
				fail("receipt %d: line %d does not start with %q", i, j+2, prefix)
			}
		}
		if lines[1] != "origin "+verifier.Name() {
			fail("receipt %d: for another origin", i)
		}
	}
	fmt.Printf("ok %d\n", len(in.Receipts))
}
