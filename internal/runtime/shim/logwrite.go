package shim

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// The runc and process runtimes keep an instance's logs in the CRI log format (the one
// kubelet uses), one record a line:
//
//	2026-11-01T12:00:00.123456789Z stdout F the line's text
//
// F ends a line, P is a part of a longer one. The shim writes them to LogDir/container.log
// and rotates it at the size cap to container.log.1, .2… (the oldest is dropped).
const LogName = "container.log"

// MaxLogChunk is the longest piece of a line one record holds; longer lines are split.
const MaxLogChunk = 16 << 10

// LogWriter appends records to a size-capped rotating set of files. Safe for concurrent use.
type LogWriter struct {
	mu    sync.Mutex
	dir   string
	max   int64
	files int
	f     *os.File
	size  int64
	buf   []byte
}

// OpenLogWriter opens the log files in dir: at most files of max bytes.
func OpenLogWriter(dir string, max int64, files int) (*LogWriter, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	w := &LogWriter{dir: dir, max: max, files: files}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *LogWriter) open() error {
	f, err := os.OpenFile(filepath.Join(w.dir, LogName), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	w.f, w.size = f, fi.Size()
	return nil
}

// Record appends one record: a whole line's end (partial false) or a part of one.
func (w *LogWriter) Record(t time.Time, stream string, partial bool, content []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := t.UTC().AppendFormat(w.buf[:0], time.RFC3339Nano)
	b = append(b, ' ')
	b = append(b, stream...)
	if partial {
		b = append(b, " P "...)
	} else {
		b = append(b, " F "...)
	}
	b = append(b, content...)
	b = append(b, '\n')
	w.buf = b
	if w.size > 0 && w.size+int64(len(b)) > w.max {
		if err := w.rotate(); err != nil {
			return err
		}
	}
	n, err := w.f.Write(b)
	w.size += int64(n)
	return err
}

func (w *LogWriter) rotate() error {
	w.f.Close()
	base := filepath.Join(w.dir, LogName)
	for i := w.files - 1; i >= 1; i-- {
		from := base
		if i > 1 {
			from = base + "." + strconv.Itoa(i-1)
		}
		if err := os.Rename(from, base+"."+strconv.Itoa(i)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if w.files <= 1 {
		if err := os.Remove(base); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return w.open()
}

func (w *LogWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.f.Close()
}

// CopyLines reads r to its end and writes each line as records of stream; a last line
// without a newline is written as a whole line.
func (w *LogWriter) CopyLines(r io.Reader, stream string) {
	br := bufio.NewReaderSize(r, MaxLogChunk)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			partial := errors.Is(err, bufio.ErrBufferFull)
			_ = w.Record(time.Now(), stream, partial, bytes.TrimSuffix(line, []byte("\n")))
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}
