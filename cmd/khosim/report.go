package main

import (
	"fmt"
	"html"
	"os"
	"path/filepath"
	"strings"

	htmlreport "khosim/report"
	"khosim/scenarios"
)

// reports writes the HTML reports of --report DIR: one file's report is
// DIR/index.html; several files get DIR/N-NAME/index.html each and an
// index DIR/index.html linking them.
type reports struct {
	dir  string
	runs []*htmlreport.Run
}

// start returns the htmlreport.Run that records the run of file, to put in
// scenarios.Options.Report; nil without --report.
func (rs *reports) start(file string) *htmlreport.Run {
	if rs == nil || rs.dir == "" {
		return nil
	}
	r := htmlreport.NewRun(file)
	rs.runs = append(rs.runs, r)
	return r
}

// write writes every report and returns the page to open, or an error.
func (rs *reports) write() (string, error) {
	if rs == nil || rs.dir == "" || len(rs.runs) == 0 {
		return "", nil
	}
	if len(rs.runs) == 1 {
		return htmlreport.Write(rs.dir, rs.runs[0])
	}
	var b strings.Builder
	b.WriteString("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>khosim reports</title></head><body>\n<h1>khosim reports</h1>\n<ul>\n")
	for i, r := range rs.runs {
		sub := fmt.Sprintf("%d-%s", i+1, strings.TrimSuffix(filepath.Base(r.Title), filepath.Ext(r.Title)))
		if _, err := htmlreport.Write(filepath.Join(rs.dir, sub), r); err != nil {
			return "", err
		}
		verdict := map[bool]string{true: "PASS", false: "FAIL"}[r.Passed]
		fmt.Fprintf(&b, "<li><a href=\"%s/%s\">%s</a> %s</li>\n", html.EscapeString(sub), htmlreport.IndexFile, html.EscapeString(r.Title), verdict)
	}
	b.WriteString("</ul>\n</body></html>\n")
	path := filepath.Join(rs.dir, htmlreport.IndexFile)
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}

// finish writes the reports and says where they are; it returns false
// when they could not be written.
func (rs *reports) finish(e *env) bool {
	path, err := rs.write()
	if err != nil {
		fmt.Fprintf(e.stderr, "khosim: --report: %v\n", err)
		return false
	}
	if path != "" {
		fmt.Fprintf(e.stderr, "khosim: report written to %s\n", path)
	}
	return true
}

// withReport sets the run's report in opts.
func withReport(opts scenarios.Options, r *htmlreport.Run) scenarios.Options {
	opts.Report = r
	return opts
}
