// An independent reader of the witness's cosignatures, written against Go's
// golang.org/x/mod/sumdb/note: note.Open reads the signed checkpoint with the log's key and
// the witness's. Go's note.NewVerifier knows only Ed25519 keys (type 0x01) and answers
// "unknown verifier algorithm" to a cosignature key (type 0x04), so that verifier is built
// here from C2SP tlog-cosignature alone: key id SHA-256(name || "\n" || 0x04 || key)[:4], a
// signature of a big-endian u64 time (at most 2^63-1) then Ed25519 over
// "cosignature/v1\ntime <t>\n" and the checkpoint's text.
//
// Input (stdin, JSON): the log's vkey, the witness's vkey and the note. Output: "ok <time>",
// or the first failure and exit 1.
package main

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

type input struct {
	LogVkey     string `json:"log_vkey"`
	WitnessVkey string `json:"witness_vkey"`
	Note        string `json:"note"`
}

type cosigner struct {
	name   string
	hash   uint32
	public ed25519.PublicKey
	time   uint64
}

func (c *cosigner) Name() string    { return c.name }
func (c *cosigner) KeyHash() uint32 { return c.hash }
func (c *cosigner) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig[:8])
	if t > 1<<63-1 {
		return false
	}
	signed := append([]byte(fmt.Sprintf("cosignature/v1\ntime %d\n", t)), msg...)
	if !ed25519.Verify(c.public, signed, sig[8:]) {
		return false
	}
	c.time = t
	return true
}

func fail(format string, args ...interface{}) {
	fmt.Printf(format+"\n", args...)
	os.Exit(1)
}

func newCosigner(vkey string) *cosigner {
	if _, err := note.NewVerifier(vkey); err == nil {
		fail("Go took a cosignature key for a note signing key")
	}
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		fail("witness vkey: not name+id+key")
	}
	hash, err1 := strconv.ParseUint(parts[1], 16, 32)
	key, err2 := base64.StdEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil || len(parts[1]) != 8 || len(key) != 33 || key[0] != 0x04 {
		fail("witness vkey: not a cosignature/v1 key")
	}
	id := sha256.Sum256(append([]byte(parts[0]+"\n"), key...))
	if binary.BigEndian.Uint32(id[:4]) != uint32(hash) {
		fail("witness vkey: its id is not SHA-256(name, 0x0A, 0x04, key)[:4]")
	}
	return &cosigner{name: parts[0], hash: uint32(hash), public: ed25519.PublicKey(key[1:])}
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fail("bad input: %v", err)
	}
	log, err := note.NewVerifier(in.LogVkey)
	if err != nil {
		fail("log vkey: %v", err)
	}
	witness := newCosigner(in.WitnessVkey)
	n, err := note.Open([]byte(in.Note), note.VerifierList(log, witness))
	if err != nil {
		fail("note: %v", err)
	}
	signed := map[string]bool{}
	for _, s := range n.Sigs {
		signed[s.Name] = true
	}
	if !signed[log.Name()] || !signed[witness.name] {
		fail("note: verified signatures %v, not the log's and the witness's", n.Sigs)
	}
	if !strings.HasPrefix(n.Text, log.Name()+"\n") {
		fail("note: not a checkpoint of %s", log.Name())
	}
	fmt.Printf("ok %d\n", witness.time)
}
