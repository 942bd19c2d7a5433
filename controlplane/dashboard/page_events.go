package dashboard

import (
	"fmt"
	"sort"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// maxEvents is how many of the newest events the events page shows.
const maxEvents = 200

// The events stream: the newest events, oldest first, live.
func init() {
	definePage(&page{Name: "events", Title: "Events", Nav: true, NavOrder: 6, Kinds: []string{"Event"},
		Frags: func(v *view) []frag {
			evs := listOf[*apiv1.Event](v, "Event")
			sort.Slice(evs, func(i, j int) bool { return eventTime(evs[i]) < eventTime(evs[j]) })
			if len(evs) > maxEvents {
				evs = evs[len(evs)-maxEvents:]
			}
			out := make([]frag, 0, len(evs))
			for _, e := range evs {
				out = append(out, eventFrag(e, "events"))
			}
			return out
		}})
}

// eventTime orders events: by their last occurrence.
func eventTime(e *apiv1.Event) string {
	ts := e.GetLastTimestamp()
	if ts == "" {
		ts = e.GetEventTime()
	}
	if ts == "" {
		ts = e.GetMetadata().GetCreationTimestamp()
	}
	return fmt.Sprintf("%020d", timestamp(ts).UnixNano())
}

func eventFrag(e *apiv1.Event, parent string) frag {
	md, io := e.GetMetadata(), e.GetInvolvedObject()
	// Ordered by creation, so an event seen again keeps its row.
	id := fmt.Sprintf("e/%020d/%s/%s", timestamp(md.GetCreationTimestamp()).UnixNano(), md.GetNamespace(), md.GetName())
	data := struct {
		ID, NS, Type, Reason, Object, Message, Source, When string
		Count                                               int32
	}{id, md.GetNamespace(), e.GetType(), e.GetReason(), io.GetKind() + "/" + io.GetName(), e.GetMessage(),
		e.GetSource().GetComponent(), e.GetLastTimestamp(), e.GetCount()}
	return frag{ID: id, Parent: parent, Template: "event-row", Data: data}
}
