package backfill

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/quiver-ml/quiver/features"
)

// bigCSV returns a CSV spine of rows records of about 27 bytes each: ids quoted
// with commas, doubled quotes and line breaks, some \r\n line ends, and the
// records as encoding/csv reads them.
func bigCSV(rng *rand.Rand, rows int) ([]byte, [][]string) {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	recs := [][]string{{"user_id", "ts", "note"}}
	w.Write(recs[0])
	for i := range rows {
		note := ""
		switch rng.IntN(6) {
		case 0:
			note = fmt.Sprintf("said \"hi\"\nthen, %d\nleft", i)
		case 1:
			note = strings.Repeat("\"", rng.IntN(4)) + "\n"
		case 2:
			note = "plain"
		}
		rec := []string{fmt.Sprintf("u%d", rng.IntN(1000)), fmt.Sprint(1_700_000_000_000 + i), note}
		w.UseCRLF = rng.IntN(2) == 0
		w.Write(rec)
		w.Flush()
		recs = append(recs, rec)
	}
	return buf.Bytes(), recs
}

// TestSplitCSV splits a CSV of quoted line breaks and quotes into chunks:
// read one after another, they are the file's records, and each numbers
// its lines as the whole file does.
func TestSplitCSV(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	data, recs := bigCSV(rng, 60_000)
	path := filepath.Join(t.TempDir(), "spine.csv")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(bytes.NewReader(data))
	if _, err := r.Read(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 2, 3, 5} {
		chunks, err := splitCSV(f, r.InputOffset(), n)
		if err != nil {
			t.Fatal(err)
		}
		if len(chunks) != n {
			t.Errorf("%d chunks of a %d-byte file, want %d", len(chunks), len(data), n)
		}
		var got [][]string
		for k, c := range chunks {
			c.fields = 3
			if k > 0 && (c.start != chunks[k-1].end || c.lines != bytes.Count(data[:c.start], []byte{'\n'})) {
				t.Fatalf("chunk %d starts at %d after %d line breaks; the one before ends at %d", k, c.start, c.lines, chunks[k-1].end)
			}
			if err := c.each(f, func(_ int, rec []string) error {
				got = append(got, append([]string(nil), rec...))
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		if len(got) != len(recs)-1 {
			t.Fatalf("%d chunks: %d records, want %d", n, len(got), len(recs)-1)
		}
		for i, rec := range got {
			if !slices.Equal(rec, recs[i+1]) {
				t.Fatalf("%d chunks: record %d is %q, want %q", n, i, rec, recs[i+1])
			}
		}
	}
}

// TestSpineSize counts a CSV's records as encoding/csv reads them, quoted
// line breaks not counted, whatever the buffers it reads the file in.
func TestSpineSize(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	data, recs := bigCSV(rng, 60_000)
	path := filepath.Join(t.TempDir(), "spine.csv")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	rows, cols, text, err := spineSize(path)
	if err != nil || rows != int64(len(recs)-1) || cols != 3 || text != int64(len(data)) {
		t.Fatalf("spineSize: %d rows, %d columns, %d bytes (%v); want %d, 3, %d", rows, cols, text, err, len(recs)-1, len(data))
	}
	for range 100 {
		var n int64
		quoted := false
		for b := data; len(b) > 0; {
			k := min(len(b), 1+rng.IntN(64))
			n += lineBreaks(b[:k], &quoted)
			b = b[k:]
		}
		if n != int64(len(recs)) {
			t.Fatalf("counted in random buffers: %d line breaks outside quotes, want %d", n, len(recs))
		}
	}
}

// TestReadCSVChunks reads a spine large enough to be read in chunks, with a
// bad record in its last part: the error names the file's row and line, as
// a reader of the whole file would; without it, every row is read in order.
func TestReadCSVChunks(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	data, recs := bigCSV(rng, 60_000)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.csv")
	if err := os.WriteFile(good, data, 0o644); err != nil {
		t.Fatal(err)
	}
	keys := map[string]features.Type{"user_id": features.TypeString}
	s, err := readCSV(good, keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.len() != len(recs)-1 || s.cols[1].Type != features.TypeInt || s.cols[2].Type != features.TypeString {
		t.Fatalf("%d rows, columns %v", s.len(), s.cols)
	}
	for i, rec := range recs[1:] {
		for j, want := range rec {
			v := s.table.get(i, j)
			got := ""
			if !v.IsNull() {
				got = fmt.Sprint(v.Any())
			}
			if got != want {
				t.Fatalf("row %d column %d: %q, want %q", i, j, got, want)
			}
		}
	}

	// A ragged record three quarters of the way, and an unparseable int
	// after it: the first is the error, at its row and line.
	bad := len(recs) * 3 / 4
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	line := 0
	for i, rec := range recs {
		if i == bad {
			line = bytes.Count(buf.Bytes(), []byte{'\n'}) + 1
			rec = append(rec, "extra")
		}
		if i == bad+10 {
			rec = []string{rec[0], "soon", rec[2]}
		}
		w.Write(rec)
		w.Flush()
	}
	badPath := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(badPath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = readCSV(badPath, keys, nil)
	want := fmt.Sprintf("spine %s: row %d (the header is row 1): record on line %d: wrong number of fields", badPath, bad+1, line)
	var pe *csv.ParseError
	if err == nil || err.Error() != want || !errors.As(err, &pe) {
		t.Fatalf("got %v\nwant %s", err, want)
	}
}
