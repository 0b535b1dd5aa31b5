package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/egressd/egressd/policy"
)

// maxBody bounds a PUT body: room for tens of thousands of entries.
const maxBody = 1 << 20

// errTooLarge is a body over maxBody (413).
var errTooLarge = fmt.Errorf("request body larger than %d bytes", maxBody)

// decodeSpec reads a policy object: exactly one JSON object whose only
// keys are mode, allow_domains, allow_cidrs, deny_cidrs and audit, each at most
// once and spelt exactly so (encoding/json alone would take "MODE" and
// let a repeated key win silently). Omitted lists are empty. The message
// of the error says what is wrong in the user's terms.
func decodeSpec(r io.Reader) (policy.Spec, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return policy.Spec{}, bodyError(err)
	}
	var spec policy.Spec
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		return policy.Spec{}, bodyError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err != nil {
			return policy.Spec{}, bodyError(err)
		}
		return policy.Spec{}, errors.New("request body: more than one JSON value")
	}
	if err := checkKeys(data); err != nil {
		return policy.Spec{}, err
	}
	return spec, nil
}

// specKeys are the keys of a policy object.
var specKeys = map[string]bool{"mode": true, "allow_domains": true, "allow_cidrs": true, "deny_cidrs": true, "audit": true}

// checkKeys checks the keys of data, one JSON object that decoded
// already: each a key of specKeys, exactly, at most once.
func checkKeys(data []byte) error {
	return checkObjectKeys(data, specKeys, "mode, allow_domains, allow_cidrs, deny_cidrs, audit")
}

// checkObjectKeys checks that each key of the object data is in keys
// (named, for the message, by list), exactly, at most once.
func checkObjectKeys(data []byte, keys map[string]bool, list string) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.Token() // the object's '{'
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return bodyError(err)
		}
		key, _ := tok.(string)
		if !keys[key] {
			return fmt.Errorf("unknown field %q; the fields are %s", key, list)
		}
		if seen[key] {
			return fmt.Errorf("%s: given more than once", key)
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return bodyError(err)
		}
	}
	return nil
}

// bodyError turns an encoding/json error into a message about the body.
func bodyError(err error) error {
	var mbe *http.MaxBytesError
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &mbe):
		return errTooLarge
	case errors.Is(err, io.EOF):
		return errors.New("request body: empty; want a JSON object such as {\"mode\":\"custom\",\"allow_domains\":[\"example.com\"]}")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("request body: truncated JSON")
	case errors.As(err, &syn):
		return fmt.Errorf("request body: invalid JSON at byte %d: %s", syn.Offset, strings.TrimPrefix(syn.Error(), "json: "))
	case errors.As(err, &typ):
		if typ.Field == "" {
			return fmt.Errorf("request body: got a JSON %s, want an object", typ.Value)
		}
		return fmt.Errorf("%s: got a JSON %s, want %s", typ.Field, typ.Value, want(typ.Field))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fmt.Errorf("%s; the fields are mode, allow_domains, allow_cidrs, deny_cidrs, audit",
			strings.TrimPrefix(err.Error(), "json: "))
	}
	return fmt.Errorf("request body: %w", err)
}

// want describes the JSON type a field of policy.Spec takes.
func want(field string) string {
	switch field {
	case "mode":
		return "a string: allow-all, deny-all or custom"
	case "audit":
		return "true or false"
	}
	return "a list of strings"
}
