package policy

import "errors"

// ListError is a list set in a mode that does not take it:
//
//	allow_domains is not allowed in mode deny-all
type ListError struct {
	Field string // "allow_domains", "allow_cidrs" or "deny_cidrs"
	Mode  Mode
}

func (e *ListError) Error() string {
	return e.Field + " is not allowed in mode " + string(e.Mode)
}

// ListAllowed says whether the list called field means anything in mode:
// deny-all takes no list, allow-all only deny_cidrs (everything else is
// allowed anyway), custom every list.
func ListAllowed(mode Mode, field string) bool {
	switch mode {
	case ModeDenyAll:
		return false
	case ModeAllowAll:
		return field == "deny_cidrs"
	}
	return true
}

// ListErrors returns one *ListError for each list s sets that its mode
// does not take, in the order allow_domains, allow_cidrs, deny_cidrs.
// Compile keeps such lists; the config file and the admin API refuse them,
// so a policy never carries a list that silently does nothing. A mode that
// is not valid yields none: Compile reports it.
func (s Spec) ListErrors() []*ListError {
	var out []*ListError
	for _, l := range []struct {
		field string
		list  []string
	}{{"allow_domains", s.AllowDomains}, {"allow_cidrs", s.AllowCIDRs}, {"deny_cidrs", s.DenyCIDRs}} {
		if len(l.list) > 0 && !ListAllowed(s.Mode, l.field) {
			out = append(out, &ListError{Field: l.field, Mode: s.Mode})
		}
	}
	return out
}

// CheckLists is ListErrors as one error (errors.Join), nil when s sets
// only lists its mode takes.
func (s Spec) CheckLists() error {
	les := s.ListErrors()
	errs := make([]error, len(les))
	for i, le := range les {
		errs[i] = le
	}
	return errors.Join(errs...)
}
