package dashboard

import (
	"bufio"
	"fmt"
	"net/http"
)

// logs streams a container's log to the pod page as server-sent events:
// one event per line, "failure" with the reason when there is no log,
// "end" when it ended.
func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
	g, ok := s.session(w, r)
	if !ok {
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	ns, pod, container := r.PathValue("ns"), r.PathValue("pod"), r.URL.Query().Get("container")
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	src := s.cfg.Logs
	if src == nil {
		src = noLogs{}
	}
	rc, err := src.Logs(asCaller(r.Context(), g.caller), ns, pod, container, true)
	if err != nil {
		fmt.Fprintf(w, "event: failure\ndata: %s/%s %s: %s\n\n", ns, pod, container, oneLine(apiMessage(err)))
		flusher.Flush()
		return
	}
	defer rc.Close()
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if _, err := fmt.Fprintf(w, "data: %s\n\n", oneLine(sc.Text())); err != nil {
			return
		}
		flusher.Flush()
	}
	if err := sc.Err(); err != nil && r.Context().Err() == nil {
		fmt.Fprintf(w, "event: failure\ndata: %s\n\n", oneLine(err.Error()))
	} else {
		fmt.Fprint(w, "event: end\ndata: end of log\n\n")
	}
	flusher.Flush()
}
