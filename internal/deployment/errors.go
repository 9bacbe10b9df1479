package deployment

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrSchemaVersion is matched (with errors.Is) by a [*ValidationError] one
// of whose problems is a schemaVersion that is present but not supported.
// The agent reports such a deployment with status 412.
var ErrSchemaVersion = errors.New("unsupported schema version")

// ValidationError lists every problem found in a manifest.
type ValidationError struct {
	File     string // the file name given to Parse; empty for FromAgentDesired and Validate
	Problems []Problem
}

// Problem is one thing wrong with a manifest.
type Problem struct {
	Path    string // dotted path of the offending field, such as "modules.tempsensor.image"; empty for syntax errors
	Message string
	Line    int // 1-based line in the file, 0 when unknown
	Column  int // 1-based column, set for syntax errors only
	schema  bool
}

// format formats p as "file:line: path: message", leaving out what is unknown.
func (p Problem) format(file string) string {
	var b strings.Builder
	b.WriteString(file)
	if p.Line > 0 {
		if file != "" {
			b.WriteByte(':')
		}
		b.WriteString(strconv.Itoa(p.Line))
		if p.Column > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(p.Column))
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Error lists the problems one per line, each as "file:line: path: message".
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.format(e.File)
	}
	return strings.Join(lines, "\n")
}

// Is reports whether target is ErrSchemaVersion and a problem is an
// unsupported schema version.
func (e *ValidationError) Is(target error) bool {
	if target != ErrSchemaVersion {
		return false
	}
	for _, p := range e.Problems {
		if p.schema {
			return true
		}
	}
	return false
}

// checker collects the problems and warnings of one decoding.
type checker struct {
	file     string
	problems []Problem
	warnings []string
	// skipDollar ignores members whose key starts with '$', as twin
	// sections carry $metadata and $version.
	skipDollar bool
	// routeModules are the modules routes name, checked against the
	// manifest's modules once all is read.
	routeModules []routeModule
}

func (c *checker) errorf(line int, path, format string, args ...any) {
	c.problems = append(c.problems, Problem{Path: path, Message: fmt.Sprintf(format, args...), Line: line})
}

func (c *checker) warnf(path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	c.warnings = append(c.warnings, msg)
}

func (c *checker) err() error {
	if len(c.problems) == 0 {
		return nil
	}
	return &ValidationError{File: c.file, Problems: c.problems}
}

// join appends key to a dotted path.
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
