package admin

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

const jobBody = `{"name":"job","interface":"veth-job","sources":["10.4.0.2"],"policy":{"mode":"custom","allow_domains":["pypi.org"]}}`

func TestCreateAndDeleteSandbox(t *testing.T) {
	r := newRig(t, nil)
	code, body := r.do("POST", "/v1/sandboxes", jobBody)
	if code != http.StatusCreated {
		t.Fatalf("POST: %d %s", code, body)
	}
	var got struct {
		Name, Interface, Origin string
		Sources                 []string
		Policy                  struct{ Mode string }
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if got.Name != "job" || got.Interface != "veth-job" || got.Origin != "api" || got.Policy.Mode != "custom" ||
		strings.Join(got.Sources, ",") != "10.4.0.2/32" {
		t.Errorf("POST answered %s", body)
	}
	_, list := r.do("GET", "/v1/sandboxes", "")
	var rows []map[string]any
	json.Unmarshal([]byte(list), &rows)
	if last := rows[len(rows)-1]; last["name"] != "job" || last["origin"] != "api" || last["source"] != "api" {
		t.Errorf("GET /v1/sandboxes lacks the new sandbox last: %s", list)
	}
	for _, tc := range []struct {
		method, path, body string
		code               int
		msg                string
	}{
		{"POST", "/v1/sandboxes", jobBody, 409, `sandbox "job": name already taken`},
		{"POST", "/v1/sandboxes", strings.Replace(jobBody, `"job"`, `"job2"`, 1), 409, "overlap"}, // one interface may hold many sandboxes, not one source
		{"POST", "/v1/sandboxes", strings.NewReplacer(`"job"`, `"job2"`, "veth-job", "veth-j2", "10.4.0.2", "10.3.0.0/24").Replace(jobBody), 409, "overlap"},
		{"POST", "/v1/sandboxes", strings.NewReplacer(`"job"`, `"job2"`, "veth-job", "veth-j2", "10.4.0.2", "10.5.0.1/8").Replace(jobBody), 400, `sources[0] "10.5.0.1/8"`},
		{"POST", "/v1/sandboxes", `{"name":"x","interface":"veth-x","sources":["10.6.0.2"],"policy":{"mode":"custom"},"extra":1}`, 400, `unknown field "extra"`},
		{"POST", "/v1/sandboxes", `{"name":"x","interface":"veth-x","sources":["10.6.0.2"],"policy":{"mode":"custom","allow_domain":["a"]}}`, 400, `policy: unknown field "allow_domain"`},
		{"POST", "/v1/sandboxes", `{"name":"x","Interface":"veth-x","sources":["10.6.0.2"],"policy":{"mode":"custom"}}`, 400, `unknown field "Interface"`},
		{"DELETE", "/v1/sandboxes/open", "", 409, `sandbox "open" comes from the config file egressd.toml`},
		{"DELETE", "/v1/sandboxes/nope", "", 404, `unknown sandbox`},
	} {
		code, body := r.do(tc.method, tc.path, tc.body)
		if msg := errorOf(t, body); code != tc.code || !strings.Contains(msg, tc.msg) {
			t.Errorf("%s %s %s: %d %q, want %d %q", tc.method, tc.path, tc.body, code, msg, tc.code, tc.msg)
		}
	}
	r.kernel.fail = true
	if code, body := r.do("DELETE", "/v1/sandboxes/job", ""); code != http.StatusInternalServerError {
		t.Errorf("DELETE with a failing kernel: %d %s", code, body)
	}
	r.kernel.fail = false
	if code, _ := r.do("GET", "/v1/sandboxes/job/policy", ""); code != http.StatusOK {
		t.Errorf("a failed DELETE removed the sandbox: GET policy %d", code)
	}
	if code, body := r.do("DELETE", "/v1/sandboxes/job", ""); code != http.StatusNoContent {
		t.Errorf("DELETE: %d %s", code, body)
	}
	if code, _ := r.do("GET", "/v1/sandboxes/job/policy", ""); code != http.StatusNotFound {
		t.Errorf("deleted sandbox still answers: %d", code)
	}
}
