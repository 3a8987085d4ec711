package scenarios

import (
	"fmt"
	"strings"
	"testing"
)

// putFDScript is a scenario that puts n empty memfds into one box, one
// FDBOX_PUT_FD each.
func putFDScript(n int) string {
	var b strings.Builder
	b.WriteString("machine memory=512MiB\nboot\nprocess p uid=0\n")
	b.WriteString("p: ctl = open(\"/dev/fdbox/fdbox\", O_RDWR)\np: ioctl(ctl, FDBOX_CREATE_BOX, name=\"b\")\np: box = open(\"/dev/fdbox/b\", O_RDWR)\n")
	for i := range n {
		fmt.Fprintf(&b, "p: m = memfd_create(\"m%d\", 0)\np: ioctl(box, FDBOX_PUT_FD, fd=m, name=\"f%d\")\n", i, i)
	}
	b.WriteString("p: n = ioctl(box, FDBOX_LIST)\n")
	return b.String()
}

// termsScript is a scenario whose one let adds n ones.
func termsScript(n int) string {
	return "machine memory=128MiB\nlet x = 1" + strings.Repeat(" + 1", n-1) + "\nexpect x == " + fmt.Sprint(n) + "\n"
}

func benchScript(b *testing.B, src string) {
	s, err := Parse("bench.scn", []byte(src))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if res := Run(s, Options{}); !res.Passed {
			b.Fatal(res.Failures)
		}
	}
}

// BenchmarkPutFD10000 puts 10,000 memfds into one box (issue 16 #5: the
// runner used to format the whole driver dump before every ioctl).
func BenchmarkPutFD10000(b *testing.B) { benchScript(b, putFDScript(10000)) }

// BenchmarkLet200kTerms evaluates a let of 200,000 terms (issue 16 #5:
// classifying the statement used to print it, quadratically).
func BenchmarkLet200kTerms(b *testing.B) { benchScript(b, termsScript(200000)) }
