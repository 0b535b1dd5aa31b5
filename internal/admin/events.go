package admin

import (
	"encoding/json"
	"net/http"
	"time"
)

// streamEvents is GET /v1/events[?sandbox=NAME]: every decision from now
// on as newline-delimited JSON, the fields of its log line. A reader that
// falls behind loses events; the next line it gets then is
// {"dropped": N}.
func (h *handler) streamEvents(w http.ResponseWriter, r *http.Request) {
	if h.Events == nil {
		writeError(w, http.StatusNotFound, "no event stream")
		return
	}
	sandbox := r.URL.Query().Get("sandbox")
	if sandbox != "" {
		if _, ok := h.ctl.Sandboxes().ByName(sandbox); !ok {
			writeError(w, http.StatusNotFound, "sandbox "+sandbox+": unknown sandbox")
			return
		}
	}
	// A stream lives as long as its reader: no read or write deadline.
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Time{})
	sub := h.Events.Subscribe(sandbox)
	defer h.Events.Unsubscribe(sub)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case line := <-sub.C:
			if n := sub.Dropped(); n > 0 {
				b, _ := json.Marshal(map[string]uint64{"dropped": n})
				w.Write(append(b, '\n'))
			}
			if _, err := w.Write(append(line, '\n')); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}
}
