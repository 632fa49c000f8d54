// SPDX-License-Identifier: GPL-3.0-or-later

package sim

import (
	"context"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Fault is one injected failure (admin API POST /faults).
//
//	{"type": "unreachable", "address": "127.0.10.12"}
//	{"type": "rpc_error", "address": "127.0.10.11", "method": "Bootstrap", "code": "Unavailable", "message": "...", "count": 1}
//	{"type": "slow", "address": "127.0.10.11", "method": "ApplyConfiguration", "delay_seconds": 5}
//
// An empty address matches every node; method matches the full gRPC method name or its
// last element; count 0 means until cleared.
type Fault struct {
	Type         string  `json:"type"`
	Address      string  `json:"address,omitempty"`
	Method       string  `json:"method,omitempty"`
	Code         string  `json:"code,omitempty"`
	Message      string  `json:"message,omitempty"`
	Count        int     `json:"count,omitempty"`
	DelaySeconds float64 `json:"delay_seconds,omitempty"`
	// After: the RPC runs (its effect happens) and then fails, like a response lost on
	// the way back (an interrupted bootstrap).
	After bool `json:"after,omitempty"`
	Hits  int  `json:"hits"`
}

type faultSet struct {
	mu     sync.Mutex
	faults []*Fault
}

func newFaultSet() *faultSet { return &faultSet{} }

func (f *Fault) matches(addr, method string) bool {
	if f.Address != "" && f.Address != addr {
		return false
	}

	if f.Method == "" {
		return true
	}

	return f.Method == method || strings.HasSuffix(method, "/"+f.Method)
}

func (fs *faultSet) add(f *Fault) {
	fs.mu.Lock()
	defer fs.mu.Unlock()

	fs.faults = append(fs.faults, f)
}

func (fs *faultSet) clear() []*Fault {
	fs.mu.Lock()
	defer fs.mu.Unlock()

	old := fs.faults
	fs.faults = nil

	return old
}

func (fs *faultSet) list() []Fault {
	fs.mu.Lock()
	defer fs.mu.Unlock()

	out := make([]Fault, 0, len(fs.faults))
	for _, f := range fs.faults {
		out = append(out, *f)
	}

	return out
}

func (fs *faultSet) unreachable(addr string) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()

	for _, f := range fs.faults {
		if f.Type == "unreachable" && (f.Address == "" || f.Address == addr) {
			return true
		}
	}

	return false
}

// apply delays or fails an RPC on a node as the matching faults say; after selects the
// faults that act once the RPC has run.
func (fs *faultSet) apply(ctx context.Context, addr, method string, after bool) error {
	var (
		delay time.Duration
		err   error
	)

	fs.mu.Lock()

	kept := fs.faults[:0]

	for _, f := range fs.faults {
		keep := true

		if f.matches(addr, method) && f.After == after {
			switch f.Type {
			case "slow":
				delay += time.Duration(f.DelaySeconds * float64(time.Second))
				f.Hits++
			case "rpc_error":
				if err == nil {
					code := codes.Unavailable
					_ = code.UnmarshalJSON([]byte(`"` + strings.ToUpper(camelToSnake(f.Code)) + `"`)) //nolint:errcheck

					msg := f.Message
					if msg == "" {
						msg = "injected fault"
					}

					err = status.Error(code, msg)
					f.Hits++

					if f.Count > 0 && f.Hits >= f.Count {
						keep = false
					}
				}
			}
		}

		if keep {
			kept = append(kept, f)
		}
	}

	fs.faults = kept
	fs.mu.Unlock()

	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	return err
}

// camelToSnake turns "AlreadyExists" into "Already_Exists" (codes' JSON names are
// upper snake case: "ALREADY_EXISTS").
func camelToSnake(s string) string {
	if strings.Contains(s, "_") || strings.ToUpper(s) == s {
		return s
	}

	var b strings.Builder

	for i, r := range s {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}

		b.WriteRune(r)
	}

	return b.String()
}
