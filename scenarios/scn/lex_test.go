package scn

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// lexAll lexes src and returns its tokens (without the final tEOL, tEOF)
// and its errors, both as strings.
func lexAll(src string) (toks []string, errs []string) {
	all := lex([]byte(src), func(p Pos, msg string) { errs = append(errs, p.String()+": "+msg) })
	for _, t := range all[:len(all)-2] {
		switch t.kind {
		case tEOL:
			toks = append(toks, "EOL@"+t.pos.String())
		case tInt:
			toks = append(toks, fmt.Sprintf("int(%d)", t.num))
		case tString:
			toks = append(toks, "str("+Quote(t.str)+")")
		case tName:
			toks = append(toks, "name("+t.text+")")
		case tIllegal:
			toks = append(toks, "illegal("+t.text+")")
		default:
			toks = append(toks, t.text)
		}
	}
	return toks, errs
}

func TestLexTokens(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{`vmm: ram = memfd_create("guest-ram", 0)`,
			`name(vmm) : name(ram) = name(memfd_create) ( str("guest-ram") , int(0) )`},
		{`x: ioctl(b, FDBOX_GET_FD, name="r") -> EBUSY`,
			`name(x) : name(ioctl) ( name(b) , name(FDBOX_GET_FD) , name(name) = str("r") ) -> name(EBUSY)`},
		{`expect a==b`, `name(expect) name(a) == name(b)`},
		{`expect a != b`, `name(expect) name(a) != name(b)`},
		{`scratch=50% A|B 1+2-3*4 - > ->`, `name(scratch) = int(50) % name(A) | name(B) int(1) + int(2) - int(3) * int(4) - illegal(>) ->`},
		{"a # comment \"unterminated\n  b", `name(a) EOL@1:3 name(b)`},
		{`"# not a comment" # but this is`, `str("# not a comment")`},
		{"\t_x9\r\n", `name(_x9) EOL@1:6`},
		{"a\n\n# only a comment\nb", `name(a) EOL@1:2 EOL@2:1 EOL@3:1 name(b)`},
	} {
		toks, _ := lexAll(tc.src)
		if got := strings.Join(toks, " "); got != tc.want {
			t.Errorf("lex(%q)\n got %s\nwant %s", tc.src, got, tc.want)
		}
	}
}

func TestLexIntegers(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want uint64
	}{
		{"0", 0},
		{"42", 42},
		{"007", 7},
		{"0x10", 16},
		{"0xff", 255},
		{"0xFF", 255},
		{"0x1B", 27}, // B is a hex digit here, not a suffix
		{"4KiB", 4096},
		{"4K", 4096},
		{"3MiB", 3 << 20},
		{"3M", 3 << 20},
		{"1G", 1 << 30},
		{"2GiB", 2 << 30},
		{"1T", 1 << 40},
		{"5TiB", 5 << 40},
		{"0x10KiB", 16 << 10},
		{"0x2M", 2 << 20},
		{"18446744073709551615", math.MaxUint64},
		{"0xffffffffffffffff", math.MaxUint64},
		{"16777215TiB", 16777215 << 40},
	} {
		toks, errs := lexAll(tc.src)
		if want := fmt.Sprintf("int(%d)", tc.want); len(errs) != 0 || len(toks) != 1 || toks[0] != want {
			t.Errorf("lex(%s) = %v %v, want %s", tc.src, toks, errs, want)
		}
	}
}

func TestLexStrings(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{`""`, ""},
		{`"guest-ram"`, "guest-ram"},
		{`"/dev/fdbox/vm1"`, "/dev/fdbox/vm1"},
		{`"a\\b"`, `a\b`},
		{`"say \"hi\""`, `say "hi"`},
		{`"l1\nl2"`, "l1\nl2"},
		{`"a\tb"`, "a\tb"},
		{`"nul\0"`, "nul\x00"},
		{`"\x41\x7a\xFF\x00"`, "Az\xff\x00"},
		{`"\01"`, "\x001"}, // \0 is one NUL; no octal
		{`"# x"`, "# x"},
		{`"é"`, "é"},
	} {
		all := lex([]byte(tc.src), func(p Pos, msg string) { t.Errorf("%s: %s: %s", tc.src, p, msg) })
		if all[0].kind != tString || all[0].str != tc.want || all[1].kind != tEOL {
			t.Errorf("lex(%s) = %v %q, want string %q", tc.src, all[0].kind, all[0].str, tc.want)
		}
	}
}

func TestLexErrors(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want []string
	}{
		{`"abc`, []string{`1:1: unterminated string`}},
		{"x = \"abc\ny", []string{`1:5: unterminated string`}},
		{`"abc\`, []string{`1:1: unterminated string`}},
		{`"a\qb"`, []string{`1:3: unknown escape \q in string (want \\, \", \n, \t, \0 or \xNN)`}},
		{`"a\é"`, []string{`1:3: unknown escape \é in string (want \\, \", \n, \t, \0 or \xNN)`}},
		{`"\x4"`, []string{`1:2: bad escape \x in string: want two hex digits`}},
		{`"\xg0" "\q`, []string{
			`1:2: bad escape \x in string: want two hex digits`,
			`1:9: unknown escape \q in string (want \\, \", \n, \t, \0 or \xNN)`,
			`1:8: unterminated string`, // the lexer reports in its order; Parse sorts
		}},
		{`18446744073709551616`, []string{`1:1: integer 18446744073709551616 overflows 64 bits`}},
		{`0x10000000000000000`, []string{`1:1: integer 0x10000000000000000 overflows 64 bits`}},
		{`16777216TiB`, []string{`1:1: integer 16777216TiB overflows 64 bits`}},
		{`x 99999999999999999999G`, []string{`1:3: integer 99999999999999999999G overflows 64 bits`}},
		{`4KB`, []string{`1:2: bad integer suffix "KB" in 4KB (want K, M, G, T, KiB, MiB, GiB or TiB)`}},
		{`4k`, []string{`1:2: bad integer suffix "k" in 4k (want K, M, G, T, KiB, MiB, GiB or TiB)`}},
		{`12ab`, []string{`1:3: bad integer suffix "ab" in 12ab (want K, M, G, T, KiB, MiB, GiB or TiB)`}},
		{`0x`, []string{`1:1: malformed hex integer 0x`}},
		{`0xg`, []string{`1:1: malformed hex integer 0xg`}},
		{`a @ b`, []string{`1:3: unexpected character '@'`}},
		{`a ! b`, []string{`1:3: unexpected character '!'`}},
		{"a \xff b", []string{`1:3: unexpected byte 0xff`}},
		{"x\n\"é\" ~ \x01", []string{`2:6: unexpected character '~'`, `2:8: unexpected character U+0001`}},
	} {
		_, errs := lexAll(tc.src)
		if strings.Join(errs, "\n") != strings.Join(tc.want, "\n") {
			t.Errorf("lex(%q) errors\n got %q\nwant %q", tc.src, errs, tc.want)
		}
	}
}

// TestLexPositions checks lines, byte columns and byte ranges.
func TestLexPositions(t *testing.T) {
	src := "machine memory=1G\n  vmm: x = f(\"é\", 1) # c\n"
	var got []string
	for _, tk := range lex([]byte(src), func(p Pos, msg string) { t.Fatalf("%s: %s", p, msg) }) {
		if src[tk.off:tk.end] != tk.text {
			t.Errorf("token %q has range [%d,%d) = %q", tk.text, tk.off, tk.end, src[tk.off:tk.end])
		}
		got = append(got, fmt.Sprintf("%s@%s", tk.kind, tk.pos))
	}
	want := `name@1:1 name@1:9 "="@1:15 integer@1:16 end of line@1:18 ` +
		`name@2:3 ":"@2:6 name@2:8 "="@2:10 name@2:12 "("@2:13 string@2:14 ","@2:18 integer@2:20 ")"@2:21 end of line@2:23 ` +
		`end of line@3:1 end of file@3:1`
	if g := strings.Join(got, " "); g != want {
		t.Errorf("positions\n got %s\nwant %s", g, want)
	}
}

// TestQuoteRoundTrip: Quote's output lexes back to the same bytes, for any
// bytes.
func TestQuoteRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := string(rapid.SliceOf(rapid.Byte()).Draw(t, "bytes"))
		q := Quote(s)
		toks := lex([]byte(q), func(p Pos, msg string) { t.Fatalf("Quote(%q) = %s: %s: %s", s, q, p, msg) })
		if len(toks) != 3 || toks[0].kind != tString || toks[0].str != s {
			t.Fatalf("Quote(%q) = %s lexes to %v %q", s, q, toks[0].kind, toks[0].str)
		}
	})
}

func TestFormatSize(t *testing.T) {
	for _, tc := range []struct {
		n    uint64
		want string
	}{
		{0, "0"}, {1, "1"}, {1023, "1023"}, {1024, "1KiB"}, {4097, "4097"},
		{2 << 20, "2MiB"}, {3 << 30, "3GiB"}, {1 << 40, "1TiB"}, {1536 << 20, "1536MiB"},
		{math.MaxUint64, "18446744073709551615"}, {1 << 63, "8388608TiB"},
	} {
		if got := FormatSize(tc.n); got != tc.want {
			t.Errorf("FormatSize(%d) = %s, want %s", tc.n, got, tc.want)
		}
	}
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.Uint64().Draw(t, "n") << rapid.UintRange(0, 45).Draw(t, "shift")
		toks := lex([]byte(FormatSize(n)), func(p Pos, msg string) { t.Fatalf("%d: %s", n, msg) })
		if toks[0].kind != tInt || toks[0].num != n {
			t.Fatalf("FormatSize(%d) = %s lexes to %d", n, FormatSize(n), toks[0].num)
		}
	})
}
