package web

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
)

// encoding/json matches a key to a struct field whatever its case: it
// would read {"AMOUNT": 5} as an amount, and {"amount": 100, "Amount": 9999}
// as 9999. API.md names the fields exactly and ignores unknown ones, so a
// key spelled otherwise than its field is unknown: decodeExact drops such
// keys before decoding. Field names are lower-case ASCII; only a key that
// holds an upper-case letter, a byte beyond ASCII (U+212A KELVIN SIGN folds
// to k) or an escape can be such a key, and a body without one (most are)
// costs one pass over its bytes.

// decodeExact unmarshals raw into v (a pointer), matching keys to struct
// fields exactly.
func decodeExact(raw []byte, v any) error {
	if oddKeys(raw) {
		var doc any
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		// Malformed JSON (trailing bytes included) is left to
		// json.Unmarshal, which says where.
		if dec.Decode(&doc) == nil && atEOF(dec) && dropInexact(doc, reflect.TypeOf(v)) {
			clean, err := json.Marshal(doc)
			if err != nil {
				return err
			}
			raw = clean
		}
	}
	return json.Unmarshal(raw, v)
}

func atEOF(dec *json.Decoder) bool {
	_, err := dec.Token()
	return err == io.EOF
}

// oddKeys reports whether raw (valid JSON) has an object key that holds an
// upper-case ASCII letter, a byte beyond ASCII or an escape.
func oddKeys(raw []byte) bool {
	for i := 0; i < len(raw); i++ {
		if raw[i] != '"' {
			continue
		}
		odd := false
		j := i + 1
		for ; j < len(raw) && raw[j] != '"'; j++ {
			switch c := raw[j]; {
			case c == '\\':
				odd = true
				j++ // the escaped byte, '"' included
			case c >= 'A' && c <= 'Z', c >= 0x80:
				odd = true
			}
		}
		k := j + 1
		for k < len(raw) && (raw[k] == ' ' || raw[k] == '\t' || raw[k] == '\n' || raw[k] == '\r') {
			k++
		}
		if odd && k < len(raw) && raw[k] == ':' {
			return true
		}
		i = j
	}
	return false
}

// dropInexact deletes, from doc (decoded into any) as it would be decoded
// into t, each object key that names a struct field only case-insensitively,
// and reports whether it deleted one. The keys of a map (notes) are data,
// and stay.
func dropInexact(doc any, t reflect.Type) bool {
	for t != nil && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
		if arr, ok := doc.([]any); ok && t.Kind() != reflect.Pointer {
			dropped := false
			for _, e := range arr {
				dropped = dropInexact(e, t.Elem()) || dropped
			}
			return dropped
		}
		t = t.Elem()
	}
	obj, ok := doc.(map[string]any)
	if !ok || t == nil {
		return false
	}
	dropped := false
	switch t.Kind() {
	case reflect.Map:
		for _, v := range obj {
			dropped = dropInexact(v, t.Elem()) || dropped
		}
	case reflect.Struct:
		for k, v := range obj {
			name, ft, found := jsonField(t, k)
			switch {
			case !found:
			case name != k:
				delete(obj, k)
				dropped = true
			default:
				dropped = dropInexact(v, ft) || dropped
			}
		}
	}
	return dropped
}
