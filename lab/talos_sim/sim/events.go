// SPDX-License-Identifier: GPL-3.0-or-later

package sim

import (
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
)

type simEvent struct {
	id    string
	actor string
	msg   proto.Message
}

// eventLog is a node's event stream (what `talosctl events` and the --wait trackers read);
// like machined's it starts empty at every boot.
type eventLog struct {
	mu      sync.Mutex
	seq     uint64
	events  []simEvent
	changed chan struct{}
}

func newEventLog() *eventLog { return &eventLog{changed: make(chan struct{})} }

func (l *eventLog) push(actor string, msg proto.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()

	l.seq++
	l.events = append(l.events, simEvent{id: fmt.Sprintf("%020d", l.seq), actor: actor, msg: msg})

	if len(l.events) > 500 {
		l.events = l.events[len(l.events)-500:]
	}

	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *eventLog) add(stage runtime.MachineStage, ready bool) {
	ev := &machineapi.MachineStatusEvent{
		Stage:  machineapi.MachineStatusEvent_MachineStage(stage), //nolint:gosec
		Status: &machineapi.MachineStatusEvent_MachineStatus{Ready: ready},
	}

	l.push("", ev)
}

func (l *eventLog) addSequence(seq, actor string) {
	l.push(actor, &machineapi.SequenceEvent{Sequence: seq, Action: machineapi.SequenceEvent_START})
	l.push(actor, &machineapi.TaskEvent{Task: "stopAllServices", Action: machineapi.TaskEvent_START})
	l.push(actor, &machineapi.TaskEvent{Task: "stopAllServices", Action: machineapi.TaskEvent_STOP})
	l.push(actor, &machineapi.SequenceEvent{Sequence: seq, Action: machineapi.SequenceEvent_STOP})
}

func (l *eventLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()

	l.events = nil
}

// since returns events after the tail selection, and a channel closed at the next event.
func (l *eventLog) since(afterID string, tail int32, first bool) ([]simEvent, string, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()

	var out []simEvent

	switch {
	case afterID != "":
		for _, e := range l.events {
			if e.id > afterID {
				out = append(out, e)
			}
		}
	case first && tail < 0:
		out = append(out, l.events...)
	case first && tail > 0:
		start := max(len(l.events)-int(tail), 0)
		out = append(out, l.events[start:]...)
	}

	last := afterID
	if len(l.events) > 0 {
		last = l.events[len(l.events)-1].id
	}

	if last == "" {
		last = "0" // sorts before every event ID
	}

	return out, last, l.changed
}

// Events streams the node's events.
func (m *machineServer) Events(in *machineapi.EventsRequest, srv grpc.ServerStreamingServer[machineapi.Event]) error {
	n := targetNode(srv.Context())

	after := in.GetTailId()
	first := true

	for {
		evs, last, changed := n.events.since(after, in.GetTailEvents(), first)
		first = false

		for _, e := range evs {
			if in.GetWithActorId() != "" && e.actor != in.GetWithActorId() {
				continue
			}

			data, err := proto.Marshal(e.msg)
			if err != nil {
				return err
			}

			if err := srv.Send(&machineapi.Event{
				Data:    &anypb.Any{TypeUrl: "talos/runtime/" + string(e.msg.ProtoReflect().Descriptor().FullName()), Value: data},
				Id:      e.id,
				ActorId: e.actor,
			}); err != nil {
				return err
			}
		}

		after = last

		select {
		case <-changed:
		case <-srv.Context().Done():
			return nil
		}
	}
}
