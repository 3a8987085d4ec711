package main

import (
	"encoding/json"
	"fmt"

	"khosim/compat"
)

func init() {
	register(&command{
		name:    "compat",
		args:    "[--json]",
		summary: "the compatibility matrix: which kernel builds hand over what to which (docs/compat.md)",
		run: func(e *env, args []string) int {
			asJSON := false
			switch {
			case len(args) == 1 && args[0] == "--json":
				asJSON = true
			case len(args) != 0:
				fmt.Fprintf(e.stderr, "usage: khosim compat [--json]\n")
				return exitUsage
			}
			builds := compat.Catalogue()
			cells := compat.Matrix(builds)
			if asJSON {
				enc := json.NewEncoder(e.stdout)
				for _, c := range cells {
					rec := struct {
						From     string           `json:"from"`
						To       string           `json:"to"`
						Outcomes []compat.Outcome `json:"outcomes"`
						Error    string           `json:"error,omitempty"`
					}{From: c.From, To: c.To, Outcomes: c.Outcomes}
					if c.Err != nil {
						rec.Error = c.Err.Error()
					}
					if err := enc.Encode(rec); err != nil {
						return exitFail
					}
				}
			} else {
				compat.Write(e.stdout, builds, cells)
			}
			if err := compat.Check(cells); err != nil {
				fmt.Fprintf(e.stderr, "khosim compat: %v\n", err)
				return exitFail
			}
			return exitOK
		},
	})
}
