package sim

import (
	"context"
	"os/exec"
	"strings"
	"time"
)

// powerHook runs Options.PowerCommand with the node name and "on" or "off" appended whenever a
// node's installed system finishes booting ("on") or goes down after that (power off, reboot,
// reset: "off"), so that what lives on the node outside this simulator (the lab Ceph's OSD
// daemons) stops and starts with it. Only transitions are reported: a node starts "off", so a
// maintenance-mode machine that reboots into its install reports nothing until it is up (the
// lab's memstore OSDs lose their data when stopped, so a spurious "off" would cost PGs). The
// commands run one at a time, in the order of the events, outside the simulator's lock.
type powerHook struct {
	argv  []string
	queue chan [2]string
	last  map[string]string // last state reported per node (absent: off); guarded by s.mu
}

func newPowerHook(s *Sim) *powerHook {
	argv := strings.Fields(s.opts.PowerCommand)
	if len(argv) == 0 {
		return nil
	}

	h := &powerHook{argv: argv, queue: make(chan [2]string, 256), last: map[string]string{}}

	go func() {
		for ev := range h.queue {
			ctx, cancel := context.WithTimeout(s.ctx, 60*time.Second)
			args := append(append([]string{}, h.argv[1:]...), ev[0], ev[1])
			out, err := exec.CommandContext(ctx, h.argv[0], args...).CombinedOutput() //nolint:gosec // the lab's own command
			cancel()

			if err != nil {
				s.log.Printf("power command %s %s: %v: %s", ev[0], ev[1], err, strings.TrimSpace(string(out)))
			} else if text := strings.TrimSpace(string(out)); text != "" {
				s.log.Printf("power command %s %s: %s", ev[0], ev[1], text)
			}
		}
	}()

	return h
}

// notify queues one event (s.mu held; never blocks the simulator for long).
func (h *powerHook) notify(name, state string) {
	if h == nil {
		return
	}

	if prev, ok := h.last[name]; (ok && prev == state) || (!ok && state == "off") {
		return
	}

	h.last[name] = state

	select {
	case h.queue <- [2]string{name, state}:
	default:
	}
}
