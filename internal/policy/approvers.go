package policy

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/writ-dev/writ/approval"
)

// Limits on the approval section of an entitlement.
const (
	// WindowLimit is the longest approval window a policy may allow.
	WindowLimit = 7 * 24 * time.Hour
	// PendingTTLLimit is the longest a request may wait for reviews.
	PendingTTLLimit = 7 * 24 * time.Hour
	// MaxStageApprovers is the largest min a stage may ask for.
	MaxStageApprovers = 10
	// MaxPatternLen bounds reason and ticket patterns, in bytes.
	MaxPatternLen = 512
	// MaxReasonLen is the largest reason.max_len a policy may set, in bytes
	// (reliability case T37: reasons stay bounded).
	MaxReasonLen = 4096
)

var (
	stageFields  = []string{"groups", "min"}
	reasonFields = []string{"required", "pattern", "max_len"}
	// approverOnly are the approval fields that mean something only to mode
	// approvers.
	approverOnly = []string{"stages", "window", "pending_ttl", "reason", "ticket"}
)

// approval decodes the approval section into e: the mode, an auto mode's
// optional condition, and an approvers mode's stages, window, pending
// deadline, reason rule and ticket pattern.
func (d *decoder) approval(n *yaml.Node, path string, e *approval.Entitlement) {
	fields, ok := d.mapping(n, path, approvalFields, []string{"mode"})
	if !ok {
		return
	}
	modeKnown := false
	if f, ok := fields["mode"]; ok {
		mp := join(path, "mode")
		if s, ok := d.str(f.val, mp); ok {
			e.Mode = approval.Mode(s)
			switch {
			case contains(modeNames(supportedModes), s):
				modeKnown = true
			case s == string(modeBreakGlass):
				d.errorf(f.val, mp, "%q is not an approval mode: break-glass is set in the entitlement's own break_glass: block, next to approval:, and works with either mode (valid modes: %s)", s, strings.Join(modeNames(knownModes), ", "))
			case contains(modeNames(knownModes), s):
				modeKnown = true
				d.report(f.val, mp, approval.ErrUnsupported, fmt.Sprintf("%q is not supported yet by this version of writd (supported: %s)", s, strings.Join(modeNames(supportedModes), ", ")))
			default:
				d.errorf(f.val, mp, "%q is not an approval mode (valid: %s)", s, strings.Join(modeNames(knownModes), ", "))
			}
		}
	}
	if f, ok := fields["condition"]; ok {
		e.Condition = d.condition(f, join(path, "condition"), modeKnown && e.Mode != approval.ModeAuto)
	}

	// Approver fields are refused with mode auto, where they would be
	// silently ignored; with an unknown mode they are still checked.
	auto := modeKnown && e.Mode == approval.ModeAuto
	for _, name := range approverOnly {
		f, ok := fields[name]
		if !ok {
			continue
		}
		p := join(path, name)
		if auto {
			d.errorf(f.key, p, "is allowed only with mode approvers")
			continue
		}
		switch name {
		case "stages":
			e.Stages = d.stages(f.val, p)
		case "window":
			e.Window = d.duration(f.val, p, WindowLimit, "168h (7 days)")
		case "pending_ttl":
			e.PendingTTL = d.duration(f.val, p, PendingTTLLimit, "168h (7 days)")
		case "reason":
			e.Reason = d.reason(f.val, p)
		case "ticket":
			e.TicketPattern, _ = d.pattern(f.val, p)
		}
	}
	if modeKnown && e.Mode == approval.ModeApprovers {
		if _, ok := fields["stages"]; !ok {
			d.errorf(n, path, `missing required field "stages": mode approvers needs at least one stage, such as {groups: [dba], min: 1}`)
		}
		if _, ok := fields["window"]; !ok {
			d.errorf(n, path, `missing required field "window": how long an approval lasts once granted, such as 8h (at most 168h)`)
		}
		if e.PendingTTL == 0 {
			e.PendingTTL = approval.DefaultPendingTTL
		}
	}
}

// condition compiles an auto mode's CEL condition; misplaced reports that the
// mode is not auto.
func (d *decoder) condition(f field, path string, misplaced bool) approval.Condition {
	if misplaced {
		d.errorf(f.key, path, "is allowed only with mode auto")
		return nil
	}
	expr, ok := d.str(f.val, path)
	if !ok {
		return nil
	}
	c, err := compile(expr)
	if err != nil {
		d.errorf(f.val, path, "%s", err)
		return nil
	}
	return c
}

// stages decodes the approval stages: each needs min distinct people from
// any of its groups.
func (d *decoder) stages(n *yaml.Node, path string) []approval.Stage {
	items, _ := d.list(n, path, "at least one stage is required, such as {groups: [dba], min: 1}")
	var out []approval.Stage
	for i, item := range items {
		p := index(path, i)
		fields, ok := d.mapping(item, p, stageFields, stageFields)
		if !ok {
			continue
		}
		var s approval.Stage
		if f, ok := fields["groups"]; ok {
			s.Groups = d.groups(f.val, join(p, "groups"))
		}
		if f, ok := fields["min"]; ok {
			s.Min = d.intIn(f.val, join(p, "min"), 1, MaxStageApprovers, "approvers")
		}
		out = append(out, s)
	}
	return out
}

// groups decodes a stage's approver groups: non-empty, distinct strings.
func (d *decoder) groups(n *yaml.Node, path string) []string {
	return d.groupList(n, path, "at least one approver group is required")
}

// groupList decodes a list of non-empty, distinct group names, reporting
// an empty list with emptyMsg.
func (d *decoder) groupList(n *yaml.Node, path, emptyMsg string) []string {
	items, _ := d.list(n, path, emptyMsg)
	var out []string
	seen := map[string]int{}
	for i, item := range items {
		p := index(path, i)
		s, ok := d.str(item, p)
		if !ok {
			continue
		}
		if first, dup := seen[s]; dup {
			d.errorf(item, p, "%q is listed twice (also %s)", s, index(path, first))
			continue
		}
		seen[s] = i
		out = append(out, s)
	}
	return out
}

// reason decodes the rule requesters' reasons must follow.
func (d *decoder) reason(n *yaml.Node, path string) approval.ReasonRule {
	var r approval.ReasonRule
	fields, ok := d.mapping(n, path, reasonFields, nil)
	if !ok {
		return r
	}
	if f, ok := fields["required"]; ok {
		if v, ok := d.scalar(f.val, join(path, "required"), "!!bool", "true or false"); ok {
			r.Required = v == "true"
		}
	}
	if f, ok := fields["pattern"]; ok {
		r.Pattern, _ = d.pattern(f.val, join(path, "pattern"))
	}
	if f, ok := fields["max_len"]; ok {
		r.MaxLen = d.intIn(f.val, join(path, "max_len"), 1, MaxReasonLen, "bytes")
	}
	return r
}

// pattern decodes a regular expression in Go's RE2 syntax of at most
// MaxPatternLen bytes.
func (d *decoder) pattern(n *yaml.Node, path string) (string, bool) {
	s, ok := d.str(n, path)
	if !ok {
		return "", false
	}
	if len(s) > MaxPatternLen {
		d.errorf(n, path, "is %d bytes long; the limit is %d", len(s), MaxPatternLen)
		return "", false
	}
	if _, err := regexp.Compile(s); err != nil {
		d.errorf(n, path, "%q is not a valid regular expression (Go RE2 syntax): %s", s, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		return "", false
	}
	return s, true
}

// intIn decodes a whole number in [lo, hi]; unit names what it counts.
func (d *decoder) intIn(n *yaml.Node, path string, lo, hi int, unit string) int {
	want := fmt.Sprintf("a whole number from %d to %d", lo, hi)
	if _, ok := d.scalar(n, path, "!!int", want); !ok {
		return 0
	}
	var v int
	if err := n.Decode(&v); err != nil || v < lo || v > hi {
		d.errorf(n, path, "%s is out of range; use %d to %d %s", n.Value, lo, hi, unit)
		return 0
	}
	return v
}

func modeNames(modes []approval.Mode) []string {
	out := make([]string, len(modes))
	for i, m := range modes {
		out[i] = string(m)
	}
	return out
}
