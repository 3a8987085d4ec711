package scn

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Pos is a position in a scenario file. Line and Col are 1-based. Col counts
// bytes from the start of the line: a tab is one column, and a multi-byte
// UTF-8 character is as many columns as it has bytes. The zero Pos is "no
// position".
type Pos struct {
	Line, Col int
}

// String returns "LINE:COL".
func (p Pos) String() string { return fmt.Sprintf("%d:%d", p.Line, p.Col) }

// IsValid reports whether p is a real position.
func (p Pos) IsValid() bool { return p.Line > 0 }

// Before reports whether p comes before q in the file.
func (p Pos) Before(q Pos) bool {
	return p.Line < q.Line || p.Line == q.Line && p.Col < q.Col
}

// tokKind is the kind of a token.
type tokKind int

const (
	tEOF     tokKind = iota
	tEOL             // end of a line (at its comment, if any)
	tIllegal         // something the lexer already reported as an error
	tName            // [A-Za-z_][A-Za-z0-9_]*
	tInt             // 42, 0x2a, 4KiB, 1G
	tString          // "..." with escapes
	tColon           // :
	tAssign          // =
	tEq              // ==
	tNe              // !=
	tLParen          // (
	tRParen          // )
	tComma           // ,
	tPipe            // |
	tArrow           // ->
	tPercent         // %
	tPlus            // +
	tMinus           // -
	tStar            // *
)

var tokNames = [...]string{
	tEOF: "end of file", tEOL: "end of line", tIllegal: "invalid token",
	tName: "name", tInt: "integer", tString: "string",
	tColon: `":"`, tAssign: `"="`, tEq: `"=="`, tNe: `"!="`,
	tLParen: `"("`, tRParen: `")"`, tComma: `","`, tPipe: `"|"`,
	tArrow: `"->"`, tPercent: `"%"`, tPlus: `"+"`, tMinus: `"-"`, tStar: `"*"`,
}

func (k tokKind) String() string { return tokNames[k] }

// token is one lexical token. Tokens never span lines.
type token struct {
	kind     tokKind
	pos      Pos
	off, end int    // byte range in the source
	text     string // the source text of the token
	num      uint64 // value of a tInt
	str      string // decoded value of a tString
}

// describe names a token for an error message: `name "foo"`, `integer 4KiB`,
// `")"`, `end of line`.
func (t token) describe() string {
	switch t.kind {
	case tName:
		return fmt.Sprintf("name %q", t.text)
	case tInt:
		return "integer " + t.text
	case tString:
		return "string " + t.text
	}
	return t.kind.String()
}

// Binary size suffixes of integer literals. Lowercase forms are not
// accepted: the contract spells them K, M, G, T and KiB, MiB, GiB, TiB.
var sizeSuffixes = map[string]uint64{
	"K": 1 << 10, "KiB": 1 << 10,
	"M": 1 << 20, "MiB": 1 << 20,
	"G": 1 << 30, "GiB": 1 << 30,
	"T": 1 << 40, "TiB": 1 << 40,
}

// lexer turns a scenario file into tokens. It reports each lexical error
// through report and emits a tIllegal token in place of the bad text, so the
// parser can skip that line without reporting it a second time.
type lexer struct {
	src       []byte
	off       int
	line      int
	lineStart int
	toks      []token
	report    func(Pos, string)
}

// lex returns the tokens of src, always ending with tEOL then tEOF.
func lex(src []byte, report func(Pos, string)) []token {
	l := &lexer{src: src, line: 1, report: report}
	l.run()
	return l.toks
}

func (l *lexer) pos(off int) Pos { return Pos{Line: l.line, Col: off - l.lineStart + 1} }

func (l *lexer) emit(kind tokKind, start int) *token {
	l.toks = append(l.toks, token{
		kind: kind, pos: l.pos(start), off: start, end: l.off,
		text: string(l.src[start:l.off]),
	})
	return &l.toks[len(l.toks)-1]
}

func (l *lexer) errorf(off int, format string, args ...any) {
	l.report(l.pos(off), fmt.Sprintf(format, args...))
}

func (l *lexer) run() {
	eol := -1 // where the current line's statement ends: its comment, if any
	for l.off < len(l.src) {
		c := l.src[l.off]
		start := l.off
		switch {
		case c == '\n':
			if eol < 0 {
				eol = l.off
			}
			l.toks = append(l.toks, token{kind: tEOL, pos: l.pos(eol), off: eol, end: eol})
			l.off++
			l.line++
			l.lineStart = l.off
			eol = -1
		case c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f':
			l.off++
		case c == '#':
			eol = l.off
			for l.off < len(l.src) && l.src[l.off] != '\n' {
				l.off++
			}
		case isLetter(c):
			for l.off < len(l.src) && isWordByte(l.src[l.off]) {
				l.off++
			}
			l.emit(tName, start)
		case isDigit(c):
			l.number()
		case c == '"':
			l.string()
		default:
			l.punct()
		}
	}
	if eol < 0 {
		eol = l.off
	}
	l.toks = append(l.toks, token{kind: tEOL, pos: l.pos(eol), off: eol, end: eol})
	l.toks = append(l.toks, token{kind: tEOF, pos: l.pos(l.off), off: l.off, end: l.off})
}

func isLetter(c byte) bool   { return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool    { return '0' <= c && c <= '9' }
func isWordByte(c byte) bool { return isLetter(c) || isDigit(c) }
func isHex(c byte) bool      { return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// number lexes an integer: decimal or 0x hex digits, then an optional size
// suffix. Any letters, digits or underscores glued to the digits must form
// a valid suffix.
func (l *lexer) number() {
	start := l.off
	base, digitsStart := 10, l.off
	if l.src[l.off] == '0' && l.off+1 < len(l.src) && l.src[l.off+1] == 'x' {
		base = 16
		l.off += 2
		digitsStart = l.off
		for l.off < len(l.src) && isHex(l.src[l.off]) {
			l.off++
		}
	} else {
		for l.off < len(l.src) && isDigit(l.src[l.off]) {
			l.off++
		}
	}
	digits := string(l.src[digitsStart:l.off])
	suffixStart := l.off
	for l.off < len(l.src) && isWordByte(l.src[l.off]) {
		l.off++
	}
	suffix := string(l.src[suffixStart:l.off])
	text := string(l.src[start:l.off])

	if digits == "" {
		l.errorf(start, "malformed hex integer %s", text)
		l.emit(tIllegal, start)
		return
	}
	mul := uint64(1)
	if suffix != "" {
		m, ok := sizeSuffixes[suffix]
		if !ok {
			l.errorf(suffixStart, "bad integer suffix %q in %s (want K, M, G, T, KiB, MiB, GiB or TiB)", suffix, text)
			l.emit(tIllegal, start)
			return
		}
		mul = m
	}
	v, err := strconv.ParseUint(digits, base, 64)
	if err != nil || v > math.MaxUint64/mul {
		l.errorf(start, "integer %s overflows 64 bits", text)
		l.emit(tIllegal, start)
		return
	}
	l.emit(tInt, start).num = v * mul
}

// string lexes a double-quoted string. Strings end on the same line.
func (l *lexer) string() {
	start := l.off
	l.off++ // opening quote
	var b strings.Builder
	ok := true
	for {
		if l.off >= len(l.src) || l.src[l.off] == '\n' {
			l.errorf(start, "unterminated string")
			l.emit(tIllegal, start)
			return
		}
		c := l.src[l.off]
		if c == '"' {
			l.off++
			break
		}
		if c != '\\' {
			b.WriteByte(c)
			l.off++
			continue
		}
		esc := l.off
		if l.off+1 >= len(l.src) || l.src[l.off+1] == '\n' {
			l.off++ // the string is unterminated: reported above on the next turn
			continue
		}
		l.off += 2
		switch e := l.src[l.off-1]; e {
		case '\\', '"':
			b.WriteByte(e)
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case '0':
			b.WriteByte(0)
		case 'x':
			if l.off+2 <= len(l.src) && isHex(l.src[l.off]) && isHex(l.src[l.off+1]) {
				v, _ := strconv.ParseUint(string(l.src[l.off:l.off+2]), 16, 8)
				b.WriteByte(byte(v))
				l.off += 2
			} else {
				l.errorf(esc, `bad escape \x in string: want two hex digits`)
				ok = false
			}
		default:
			r, size := utf8.DecodeRune(l.src[l.off-1:])
			l.off += size - 1
			l.errorf(esc, `unknown escape \%s in string (want \\, \", \n, \t, \0 or \xNN)`, printableRune(r))
			ok = false
		}
	}
	if !ok {
		l.emit(tIllegal, start)
		return
	}
	l.emit(tString, start).str = b.String()
}

// printableRune spells r for an error message: itself when printable, its
// code point otherwise.
func printableRune(r rune) string {
	if r != utf8.RuneError && unicode.IsPrint(r) {
		return string(r)
	}
	return fmt.Sprintf("U+%04X", r)
}

func (l *lexer) punct() {
	start := l.off
	c := l.src[l.off]
	next := byte(0)
	if l.off+1 < len(l.src) {
		next = l.src[l.off+1]
	}
	kind, n := tIllegal, 1
	switch c {
	case ':':
		kind = tColon
	case '=':
		kind = tAssign
		if next == '=' {
			kind, n = tEq, 2
		}
	case '!':
		if next == '=' {
			kind, n = tNe, 2
		}
	case '(':
		kind = tLParen
	case ')':
		kind = tRParen
	case ',':
		kind = tComma
	case '|':
		kind = tPipe
	case '-':
		kind = tMinus
		if next == '>' {
			kind, n = tArrow, 2
		}
	case '%':
		kind = tPercent
	case '+':
		kind = tPlus
	case '*':
		kind = tStar
	}
	if kind == tIllegal {
		r, size := utf8.DecodeRune(l.src[l.off:])
		if r == utf8.RuneError && size <= 1 {
			l.errorf(start, "unexpected byte 0x%02x", c)
		} else {
			l.errorf(start, "unexpected character %s", quoteRune(r))
		}
		l.off += max(size, 1)
		l.emit(tIllegal, start)
		return
	}
	l.off += n
	l.emit(kind, start)
}

func quoteRune(r rune) string {
	if unicode.IsPrint(r) {
		return "'" + string(r) + "'"
	}
	return fmt.Sprintf("U+%04X", r)
}

// Quote returns s as a scenario string literal that lexes back to s:
// printable characters as themselves, the escapes \\ \" \n \t \0, and \xNN
// for every other byte.
func Quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == '"':
			b.WriteString(`\"`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == 0:
			b.WriteString(`\0`)
		case r == utf8.RuneError && size == 1, !unicode.IsPrint(r):
			for _, c := range []byte(s[i : i+size]) {
				fmt.Fprintf(&b, `\x%02x`, c)
			}
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	b.WriteByte('"')
	return b.String()
}

// FormatSize prints n with the largest binary suffix that divides it
// exactly (4096 -> "4KiB", 3<<30 -> "3GiB"), or in decimal ("0", "4097").
// Its output lexes back to n.
func FormatSize(n uint64) string {
	for _, s := range []struct {
		name  string
		shift uint
	}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}} {
		if n != 0 && n%(1<<s.shift) == 0 {
			return strconv.FormatUint(n>>s.shift, 10) + s.name
		}
	}
	return strconv.FormatUint(n, 10)
}
