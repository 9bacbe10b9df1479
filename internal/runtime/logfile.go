package runtime

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/runtime/shim"
)

// followPoll is how often a followed log looks for new lines: a stat and a
// read, cheap enough to do often; it is most of the time between a line's
// write and its arrival at `outpost logs -f` (and outpost dev).
const followPoll = 25 * time.Millisecond

// logRecord is one parsed record.
type logRecord struct {
	Time    time.Time
	Stream  string
	Partial bool
	Content []byte
}

func parseLogRecord(line []byte) (logRecord, bool) {
	line = bytes.TrimSuffix(line, []byte("\n"))
	ts, rest, ok1 := bytes.Cut(line, []byte(" "))
	stream, rest, ok2 := bytes.Cut(rest, []byte(" "))
	tag, content, ok3 := bytes.Cut(rest, []byte(" "))
	if !ok1 || !ok2 || !ok3 {
		return logRecord{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return logRecord{}, false
	}
	return logRecord{Time: t, Stream: string(stream), Partial: string(tag) == "P", Content: content}, true
}

// logFiles lists dir's log files, oldest first.
func logFiles(dir string) []string {
	ents, _ := os.ReadDir(dir)
	type rot struct {
		n    int
		name string
	}
	var rots []rot
	for _, e := range ents {
		if s, ok := strings.CutPrefix(e.Name(), shim.LogName+"."); ok {
			if n, err := strconv.Atoi(s); err == nil {
				rots = append(rots, rot{n, e.Name()})
			}
		}
	}
	sort.Slice(rots, func(i, j int) bool { return rots[i].n > rots[j].n })
	var out []string
	for _, r := range rots {
		out = append(out, filepath.Join(dir, r.name))
	}
	return append(out, filepath.Join(dir, shim.LogName))
}

// logReader turns records into the text Logs returns.
type logReader struct {
	opts    LogOptions
	pending []byte    // the parts of a line not ended yet
	first   time.Time // time of the line's first record
	ring    [][]byte  // Tail: the last lines
	out     io.Writer
	tailing bool
}

func (lr *logReader) record(rec logRecord) error {
	if len(lr.pending) == 0 {
		lr.first = rec.Time
		if lr.opts.Timestamps {
			lr.pending = rec.Time.UTC().AppendFormat(lr.pending, time.RFC3339Nano)
			lr.pending = append(lr.pending, ' ')
		}
	}
	lr.pending = append(lr.pending, rec.Content...)
	if rec.Partial {
		if len(lr.pending) < 1<<20 { // a runaway line is flushed in pieces
			return nil
		}
	} else {
		lr.pending = append(lr.pending, '\n')
	}
	line := lr.pending
	lr.pending = nil
	if !lr.opts.Since.IsZero() && lr.first.Before(lr.opts.Since) {
		return nil
	}
	if lr.tailing {
		if len(lr.ring) == lr.opts.Tail {
			lr.ring = lr.ring[1:]
		}
		lr.ring = append(lr.ring, line)
		return nil
	}
	_, err := lr.out.Write(line)
	return err
}

// flushTail writes the lines kept for Tail and ends tailing.
func (lr *logReader) flushTail() error {
	lr.tailing = false
	for _, l := range lr.ring {
		if _, err := lr.out.Write(l); err != nil {
			return err
		}
	}
	lr.ring = nil
	return nil
}

// readAll feeds every complete record of r to lr; it returns the bytes of an unfinished
// last record (to be completed by a later read while following).
func (lr *logReader) readAll(r *bufio.Reader, carry []byte) ([]byte, error) {
	for {
		b, err := r.ReadBytes('\n')
		if len(b) > 0 {
			if err != nil { // no newline yet: the writer is mid-record
				return append(carry, b...), nil
			}
			if len(carry) > 0 {
				b = append(carry, b...)
				carry = nil
			}
			if rec, ok := parseLogRecord(b); ok {
				if werr := lr.record(rec); werr != nil {
					return nil, werr
				}
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return carry, nil
			}
			return carry, err
		}
	}
}

// readLogs implements Logs for runtimes that keep CRI log files in dir. running reports
// whether the instance may still write; following ends once it does not and all is read.
func readLogs(ctx context.Context, dir string, opts LogOptions, running func() bool) (io.ReadCloser, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("logs: %w", err)
	}
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(followLogs(ctx, dir, opts, running, pw))
	}()
	return pr, nil
}

func followLogs(ctx context.Context, dir string, opts LogOptions, running func() bool, w io.Writer) error {
	lr := &logReader{opts: opts, out: w, tailing: opts.Tail > 0}
	var cur *os.File
	var curR *bufio.Reader
	var carry []byte
	defer func() {
		if cur != nil {
			cur.Close()
		}
	}()
	files := logFiles(dir)
	for i, name := range files {
		f, err := os.Open(name)
		if err != nil {
			continue // rotated away meanwhile, or not written yet
		}
		r := bufio.NewReaderSize(f, 64<<10)
		carry, err = lr.readAll(r, nil)
		if err != nil {
			f.Close()
			return err
		}
		if i == len(files)-1 {
			cur, curR = f, r
		} else {
			f.Close()
		}
	}
	if err := lr.flushTail(); err != nil {
		return err
	}
	if !opts.Follow {
		return nil
	}
	base := filepath.Join(dir, shim.LogName)
	tick := time.NewTicker(followPoll)
	defer tick.Stop()
	for {
		done := !running() // checked before the read: what was written before is read below
		if cur != nil {
			var err error
			if carry, err = lr.readAll(curR, carry); err != nil {
				return err
			}
			// Rotated? Then what is left of our file is read, then the files rotated since
			// ours (more than one when the writer outran us), then the new one.
			if fi, err := os.Stat(base); err == nil {
				if ours, err2 := cur.Stat(); err2 == nil && !os.SameFile(fi, ours) {
					// The rotated file is complete: nothing of it is carried over.
					if _, err = lr.readAll(curR, carry); err != nil {
						return err
					}
					cur.Close()
					cur, curR, carry = nil, nil, nil
					if err := readNewer(lr, dir, ours); err != nil {
						return err
					}
					done = false
				}
			}
		}
		if cur == nil {
			if f, err := os.Open(base); err == nil {
				cur, curR = f, bufio.NewReaderSize(f, 64<<10)
				continue
			}
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// readNewer reads the rotated files newer than ours (the file we were following).
func readNewer(lr *logReader, dir string, ours os.FileInfo) error {
	files := logFiles(dir)
	files = files[:len(files)-1] // the current file is opened by the caller
	for i, name := range files {
		fi, err := os.Stat(name)
		if err != nil || !os.SameFile(fi, ours) {
			continue
		}
		for _, newer := range files[i+1:] {
			f, err := os.Open(newer)
			if err != nil {
				continue
			}
			_, err = lr.readAll(bufio.NewReaderSize(f, 64<<10), nil)
			f.Close()
			if err != nil {
				return err
			}
		}
		return nil
	}
	return nil // ours is gone already: what it held is lost to the cap
}
