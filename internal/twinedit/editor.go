package twinedit

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
)

// Editor is the command that edits a file: $EDITOR, then $VISUAL, then vi.
func Editor() string {
	for _, k := range []string{"EDITOR", "VISUAL"} {
		if v := strings.TrimSpace(os.Getenv(k)); v != "" {
			return v
		}
	}
	return "vi"
}

// EditorCommand is the command that opens path in Editor(). The editor
// value may carry arguments ("code --wait"), so it goes through the shell
// (on Windows it is split on spaces).
func EditorCommand(path string) *exec.Cmd {
	ed := Editor()
	if runtime.GOOS == "windows" {
		args := strings.Fields(ed)
		return exec.Command(args[0], append(args[1:], path)...)
	}
	return exec.Command("sh", "-c", ed+` "$1"`, "sh", path)
}
