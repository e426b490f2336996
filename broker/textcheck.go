package broker

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/writ-dev/writ/internal/textsafe"
)

// freeTextFields are the request fields that hold words a person wrote;
// they may span lines. Every other string field is an identifier (T43).
var freeTextFields = map[protoreflect.Name]bool{
	"reason":          true,
	"comment":         true,
	"notes":           true,
	"resolution_note": true,
}

// checkText checks every string in a request message, however nested: free
// text (freeTextFields) with textsafe.FreeText, everything else (IDs,
// entitlements, SPIFFE IDs, tickets, incidents) with textsafe.Identifier.
// It returns an error wrapping errBadRequest that names the field and the
// offending character, escaped. Messages that are not protobuf pass.
func checkText(req any) error {
	m, ok := req.(proto.Message)
	if !ok || m == nil {
		return nil
	}
	return checkMessage(m.ProtoReflect())
}

func checkMessage(m protoreflect.Message) error {
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		err = checkField(fd, v)
		return err == nil
	})
	return err
}

func checkField(fd protoreflect.FieldDescriptor, v protoreflect.Value) error {
	switch {
	case fd.IsList():
		l := v.List()
		for i := range l.Len() {
			if err := checkValue(fd, l.Get(i)); err != nil {
				return err
			}
		}
	case fd.IsMap():
		var err error
		v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
			if err = checkValue(fd.MapKey(), k.Value()); err == nil {
				err = checkValue(fd.MapValue(), mv)
			}
			return err == nil
		})
		return err
	default:
		return checkValue(fd, v)
	}
	return nil
}

func checkValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) error {
	switch fd.Kind() {
	case protoreflect.StringKind:
		check := textsafe.Identifier
		if freeTextFields[fd.Name()] {
			check = textsafe.FreeText
		}
		if err := check(v.String()); err != nil {
			return fmt.Errorf("%w: field %s: %w", errBadRequest, fd.Name(), err)
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return checkMessage(v.Message())
	}
	return nil
}
