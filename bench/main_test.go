package bench

import (
	"flag"
	"os"
	"testing"
)

// TestMain runs the Go benchmarks, when -test.bench asks for any, with
// the runtime setting `khosim bench` uses (see GODEBUG and Reexec), so
// that both front ends measure the same way.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		Reexec()
	}
	os.Exit(m.Run())
}
