// SPDX-License-Identifier: GPL-3.0-or-later

package sim

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
)

// newPowerFixture starts the simulator like fixture.start, with Options.PowerCommand set to a
// script that appends its arguments to a file; it returns the fixture and that file.
func newPowerFixture(t *testing.T, nodes []NodeDef) (*fixture, string) {
	t.Helper()

	genOnce.Do(generateConfigs)

	if genErr != nil {
		t.Fatal(genErr)
	}

	f := &fixture{t: t, dir: t.TempDir(), cp: genCP, wk: genWK, tcfg: genTalosconfig, nodes: nodes}
	bin := t.TempDir()
	logFile := filepath.Join(bin, "power.log")
	script := filepath.Join(bin, "power-hook")

	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$@\" >> "+logFile+"\n"), 0o700); err != nil { //nolint:gosec // a test script
		t.Fatal(err)
	}

	// an extra argument before NAME on|off, as in 'lab/ceph/cluster host-power --dir D'
	s, err := New(Options{StateDir: f.dir, Nodes: nodes, BootDelay: 20 * time.Millisecond, InstallDelay: 50 * time.Millisecond,
		PowerCommand: script + " host-power"})
	if err != nil {
		t.Fatal(err)
	}

	if err := s.Start(); err != nil {
		t.Fatal(err)
	}

	f.sim = s
	f.admin = httptest.NewServer(s.Handler())
	t.Cleanup(f.stop)

	return f, logFile
}

func powerLines(t *testing.T, path string) []string {
	t.Helper()

	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}

	text := strings.TrimSpace(string(b))
	if text == "" {
		return nil
	}

	return strings.Split(text, "\n")
}

// waitPowerLines waits until the hook has written exactly the lines want (it reports only
// transitions, so no line repeats the one before) and returns them; the hook runs its commands
// asynchronously, one at a time.
func waitPowerLines(t *testing.T, path string, want ...string) []string {
	t.Helper()

	deadline := time.Now().Add(10 * time.Second)

	for {
		lines := powerLines(t, path)
		if strings.Join(lines, "|") == strings.Join(want, "|") {
			return lines
		}

		if time.Now().After(deadline) {
			t.Fatalf("power command lines %v, want %v", lines, want)
		}

		time.Sleep(20 * time.Millisecond)
	}
}

func TestPowerCommandFollowsPowerRebootAndReset(t *testing.T) {
	f, logFile := newPowerFixture(t, []NodeDef{{Name: "pw1", Address: tn(41)}})
	ctx := ctxT(t)
	off, on := "host-power pw1 off", "host-power pw1 on"

	// the start is a power-on into maintenance: no "off" (the machine was not up) and no "on"
	// (nothing of the node runs yet)
	time.Sleep(200 * time.Millisecond)

	if lines := powerLines(t, logFile); len(lines) != 0 {
		t.Fatalf("a start into maintenance ran the power command: %v", lines)
	}

	// the install reboots the maintenance machine into the configured system: up (the reboot out
	// of maintenance reports no "off": nothing of the node ran)
	f.apply(tn(41), f.cp)
	waitPowerLines(t, logFile, on)

	postJSON(t, f.admin.URL+"/power", `{"address": "`+tn(41)+`", "state": "off"}`)
	waitPowerLines(t, logFile, on, off)

	// powering off a node that is off changes nothing and runs nothing
	postJSON(t, f.admin.URL+"/power", `{"address": "`+tn(41)+`", "state": "off"}`)

	postJSON(t, f.admin.URL+"/power", `{"address": "`+tn(41)+`", "state": "on"}`)
	lines := waitPowerLines(t, logFile, on, off, on)

	if lines[len(lines)-1] != on {
		t.Fatalf("the last line after a power-on is %q, want %q (all: %v)", lines[len(lines)-1], on, lines)
	}

	f.waitSecure(tn(41))

	if err := f.secure(tn(41)).Reboot(ctx); err != nil {
		t.Fatal(err)
	}

	waitPowerLines(t, logFile, on, off, on, off, on)
	f.waitSecure(tn(41))

	// a reset that powers the node off: down, and it never reports up again
	if err := f.secure(tn(41)).ResetGeneric(ctx, &machineapi.ResetRequest{Graceful: true}); err != nil {
		t.Fatal(err)
	}

	waitPowerLines(t, logFile, on, off, on, off, on, off)
	time.Sleep(200 * time.Millisecond)

	if got := powerLines(t, logFile); got[len(got)-1] != off {
		t.Fatalf("a reset node reported %v after going down", got)
	}
}

func TestNoPowerCommandNoHook(t *testing.T) {
	if h := newPowerHook(&Sim{opts: Options{PowerCommand: "  "}}); h != nil {
		t.Fatal("a blank power command must not start a hook")
	}

	var h *powerHook

	h.notify("n", "off") // a nil hook (no power command) is a no-op
}
