package scenarios

import (
	"embed"
	"io/fs"
	"path"
	"slices"
)

// Library holds the scenario library (scenarios/library/*.scn): short
// commented stories that double as the language's examples and as tests
// (go test ./scenarios/ runs every one and requires it to pass).
//
//go:embed library/*.scn
var Library embed.FS

// DemoFile is the library file of the built-in demo `khosim` runs: the
// FDBox RFC cover letter's 1 GiB memfd round trip.
const DemoFile = "library/rfc_demo.scn"

// LibraryFiles returns the paths of the library's files in Library,
// sorted.
func LibraryFiles() []string {
	var out []string
	_ = fs.WalkDir(Library, "library", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && path.Ext(p) == ".scn" {
			out = append(out, p)
		}
		return nil
	})
	slices.Sort(out)
	return out
}
