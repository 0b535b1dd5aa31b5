package admin

import (
	"encoding/json"
	"net/http"
	"strings"
)

// errorBody is every error response.
type errorBody struct {
	Error string `json:"error"`
}

// writeJSON writes v, indented for people reading it with curl.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v) // the client hanging up is its own problem
}

// writeError writes {"error": msg}; a message of several lines (several
// problems) becomes one line, "; " between them.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: strings.ReplaceAll(msg, "\n", "; ")})
}

// jsonMisses answers the mux's own 404, 405 and redirects in JSON too.
// The mux reports them with an empty pattern; their plain-text body is
// dropped, the status and the Allow or Location header kept.
func jsonMisses(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		rec := &statusOnly{header: http.Header{}}
		mux.ServeHTTP(rec, r)
		for _, k := range []string{"Allow", "Location"} {
			if v := rec.header.Get(k); v != "" {
				w.Header().Set(k, v)
			}
		}
		msg := "no such endpoint: " + r.Method + " " + r.URL.Path
		switch {
		case rec.status == http.StatusMethodNotAllowed:
			msg = "method " + r.Method + " not allowed on " + r.URL.Path + "; allowed: " + rec.header.Get("Allow")
		case rec.status >= 300 && rec.status < 400: // path cleaning: follow Location
			msg = "see " + rec.header.Get("Location")
		default:
			rec.status = http.StatusNotFound
		}
		writeError(w, rec.status, msg)
	})
}

// statusOnly is a ResponseWriter that keeps the status and headers and
// drops the body.
type statusOnly struct {
	header http.Header
	status int
}

func (s *statusOnly) Header() http.Header { return s.header }

func (s *statusOnly) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return len(p), nil
}

func (s *statusOnly) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
}
