package main

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// ciFiles writes the four kinds of file a CI run meets — one that passes,
// one that fails, one that does not parse — and names a fourth that does
// not exist, in that order.
func ciFiles(t *testing.T) (dir string, files []string) {
	dir = t.TempDir()
	files = []string{
		write(t, dir, "a_ok.scn", good),
		write(t, dir, "b_fail.scn", failing),
		write(t, dir, "c_parse.scn", "machine memory=128MiB\nboot\nprocess p\np: close(\n"),
		filepath.Join(dir, "d_missing.scn"),
	}
	return dir, files
}

func TestRunTAP(t *testing.T) {
	_, files := ciFiles(t)
	status, stdout, _ := cli(t, nil, append([]string{"run", "--tap", "--keep-going"}, files...)...)
	require.Equal(t, exitUsage, status, "a parse error and a missing file: usage status")
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	require.Equal(t, "TAP version 13", lines[0])
	require.Equal(t, "1..4", lines[1])
	require.Equal(t, "ok 1 - "+files[0], lines[2])
	require.True(t, strings.HasPrefix(lines[3], "not ok 2 - "+files[1]+" # failed: line 4: p: close(3): close failed with EBADF"), lines[3])
	require.True(t, strings.HasPrefix(lines[4], "not ok 3 - "+files[2]+" # parse error: "), lines[4])
	require.True(t, strings.HasPrefix(lines[5], "not ok 4 - "+files[3]+" # missing: "), lines[5])
	require.Equal(t, "# 1 passed, 1 failed, 1 parse error, 1 missing", lines[6])

	// Without --keep-going the parse error stops the run: the others are
	// skipped, still one line each.
	status, stdout, _ = cli(t, nil, append([]string{"run", "--tap"}, files...)...)
	require.Equal(t, exitUsage, status)
	require.Contains(t, stdout, "ok 1 - "+files[0]+" # SKIP not run")
	require.Contains(t, stdout, "ok 2 - "+files[1]+" # SKIP not run")
	require.Contains(t, stdout, "# 0 passed, 0 failed, 1 parse error, 1 missing, 2 not run")
}

func TestRunJUnit(t *testing.T) {
	dir, files := ciFiles(t)
	out := filepath.Join(dir, "junit.xml")
	status, stdout, _ := cli(t, nil, append([]string{"run", "--keep-going", "--junit", out}, files...)...)
	require.Equal(t, exitUsage, status)
	require.Contains(t, stdout, "1 passed, 1 failed, 1 parse error, 1 missing")
	raw, err := os.ReadFile(out)
	require.NoError(t, err)
	var doc junitSuites
	require.NoError(t, xml.Unmarshal(raw, &doc), string(raw))
	require.Equal(t, 4, doc.Tests)
	require.Equal(t, 1, doc.Failures)
	require.Equal(t, 2, doc.Errors)
	cases := doc.Suites[0].Cases
	require.Len(t, cases, 4)
	require.Nil(t, cases[0].Failure)
	require.Nil(t, cases[0].Error)
	require.NotNil(t, cases[1].Failure)
	require.Contains(t, cases[1].Failure.Text, "b_fail.scn:4: p: close(3): close failed with EBADF")
	require.Equal(t, "parse_error", cases[2].Error.Type)
	require.Equal(t, "missing", cases[3].Error.Type)
}

func TestRunJSONEveryFile(t *testing.T) {
	_, files := ciFiles(t)
	status, stdout, stderr := cli(t, nil, append([]string{"run", "--json", "--keep-going", "-v"}, files...)...)
	require.Equal(t, exitUsage, status)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	require.Len(t, lines, 4, "one record per file:\n%s", stdout)
	var recs []jsonOutcome
	for _, l := range lines {
		var r jsonOutcome
		require.NoError(t, json.Unmarshal([]byte(l), &r), l)
		recs = append(recs, r)
		require.NotContains(t, l, `\u003e`, "no HTML escaping")
	}
	require.Equal(t, outPassed, recs[0].Status)
	require.NotNil(t, recs[0].Stats)
	require.Equal(t, outFailed, recs[1].Status)
	require.Equal(t, "p: close(3): close failed with EBADF", recs[1].Failures[0].Message)
	require.Equal(t, outParseError, recs[2].Status)
	require.NotEmpty(t, recs[2].Problem)
	require.Equal(t, outMissing, recs[3].Status)
	// -v goes to stderr, never into the records.
	require.Contains(t, stderr, "boot")
	require.Contains(t, stderr, "1 passed, 1 failed, 1 parse error, 1 missing")

	// A usage error is a record too.
	status, stdout, _ = cli(t, nil, "run", "--json", "-run", "(", files[0])
	require.Equal(t, exitUsage, status)
	var r jsonOutcome
	require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(stdout)), &r))
	require.Equal(t, outcomeKind("usage_error"), r.Status)
}

// TestRunJSONStateApart: a failure's state dump is a field of its own.
func TestRunJSONStateApart(t *testing.T) {
	dir := t.TempDir()
	f := write(t, dir, "s.scn", "machine memory=128MiB seed=1\nboot\nprocess p uid=0\np: m = memfd_create(\"m\", 0)\np: pwrite(m, 0, 8KiB, rand(1))\nexpect content(p:m, 0, 8KiB) == rand(2)\n")
	_, stdout, _ := cli(t, nil, "run", "--json", f)
	var r jsonOutcome
	require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(stdout)), &r), stdout)
	require.Len(t, r.Failures, 1)
	require.NotContains(t, r.Failures[0].Message, "\n")
	require.Contains(t, r.Failures[0].State, "struct page", "the folio dump, apart from the message")
}

func TestRunPatterns(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "one.scn", good)
	sub := filepath.Join(dir, "sub")
	require.NoError(t, os.Mkdir(sub, 0o755))
	write(t, sub, "two.scn", good)
	write(t, sub, "notes.txt", "not a scenario")

	status, stdout, _ := cli(t, nil, "run", dir)
	require.Equal(t, exitOK, status)
	require.Contains(t, stdout, "1 passed, 0 failed")

	status, stdout, _ = cli(t, nil, "run", dir+"/...")
	require.Equal(t, exitOK, status)
	require.Contains(t, stdout, "2 passed, 0 failed")
	require.Less(t, strings.Index(stdout, "one.scn"), strings.Index(stdout, "two.scn"))

	status, stdout, _ = cli(t, nil, "run", "-run", "two", dir+"/...")
	require.Equal(t, exitOK, status)
	require.Contains(t, stdout, "1 passed, 0 failed")
	require.NotContains(t, stdout, "one.scn")

	status, _, stderr := cli(t, nil, "run", "-run", "nothing", dir+"/...")
	require.Equal(t, exitUsage, status)
	require.Contains(t, stderr, "matches none")
}

// TestHelpConvention: every command answers -h, -help and --help the same
// way — its usage on stdout, exit 0 — and `khosim fdt -h` opens no file
// named -h; --version says which khosim this is.
func TestHelpConvention(t *testing.T) {
	for _, c := range commands {
		for _, h := range []string{"-h", "-help", "--help"} {
			status, stdout, stderr := cli(t, nil, c.name, h)
			require.Equal(t, exitOK, status, "%s %s: %s", c.name, h, stderr)
			require.True(t, strings.HasPrefix(stdout, "usage: khosim "+c.name), "%s %s: %q", c.name, h, stdout)
			require.Empty(t, stderr, "%s %s", c.name, h)
		}
	}
	status, stdout, _ := cli(t, nil, "--version")
	require.Equal(t, exitOK, status)
	require.True(t, strings.HasPrefix(stdout, "khosim "), stdout)
}
