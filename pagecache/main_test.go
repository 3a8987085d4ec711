package pagecache

import (
	"flag"
	"os"
	"testing"
)

// TestMain gives the rapid property tests more cases than rapid's default
// of 100 short runs, unless the command line chose: the model tests then
// take about ten seconds of CPU.
func TestMain(m *testing.M) {
	flag.Parse()
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for name, value := range map[string]string{"rapid.checks": "600", "rapid.steps": "80"} {
		if !set[name] {
			if err := flag.Set(name, value); err != nil {
				panic(err)
			}
		}
	}
	os.Exit(m.Run())
}
