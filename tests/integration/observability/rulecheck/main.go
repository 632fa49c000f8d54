// SPDX-License-Identifier: GPL-3.0-or-later
// rulecheck checks Prometheus alerting and recording rules with Prometheus's own rule loader
// (github.com/prometheus/prometheus/model/rulefmt and promql/parser, the code `promtool check
// rules` calls): strict YAML fields, PromQL expressions, durations, label and annotation
// templates, one of record/alert per rule, and duplicate rules within a group.
// A file holds either a Prometheus rule file (groups:) or PrometheusRule objects (kind
// PrometheusRule, one or more YAML documents), whose spec is checked.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"
)

func documents(content []byte) ([][]byte, error) {
	dec := yaml.NewDecoder(bytes.NewReader(content))
	var out [][]byte
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if doc == nil {
			continue
		}
		if kind, ok := doc["kind"]; ok {
			if kind != "PrometheusRule" {
				continue
			}
			spec, ok := doc["spec"]
			if !ok {
				return nil, fmt.Errorf("PrometheusRule without spec")
			}
			doc = map[string]any{"groups": spec.(map[string]any)["groups"]}
		}
		b, err := yaml.Marshal(doc)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
}

func check(file string, p parser.Parser, logger *slog.Logger) (int, []error) {
	content, err := os.ReadFile(file)
	if err != nil {
		return 0, []error{err}
	}
	docs, err := documents(content)
	if err != nil {
		return 0, []error{err}
	}
	if len(docs) == 0 {
		return 0, []error{fmt.Errorf("no rule groups found")}
	}
	n := 0
	var errs []error
	for _, d := range docs {
		groups, es := rulefmt.Parse(d, false, model.UTF8Validation, p, logger)
		errs = append(errs, es...)
		if groups == nil {
			continue
		}
		for _, g := range groups.Groups {
			seen := map[string]bool{}
			for _, r := range g.Rules {
				n++
				key := r.Alert + "\x00" + r.Record + "\x00" + r.Expr
				if seen[key] {
					errs = append(errs, fmt.Errorf("group %q: duplicate rule %s%s", g.Name, r.Alert, r.Record))
				}
				seen[key] = true
			}
		}
	}
	return n, errs
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: rulecheck FILE...")
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	p := parser.NewParser(parser.Options{})
	failed := false
	for _, file := range os.Args[1:] {
		n, errs := check(file, p, logger)
		if len(errs) > 0 {
			failed = true
			fmt.Printf("FAILED: %s\n", file)
			for _, e := range errs {
				fmt.Printf("  %v\n", e)
			}
			continue
		}
		fmt.Printf("SUCCESS: %s: %d rules found\n", file, n)
	}
	if failed {
		os.Exit(1)
	}
}
