package web

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"unicode/utf8"
)

// encoding/json replaces invalid UTF-8 and unpaired UTF-16 surrogate escapes
// with U+FFFD without a word, and accepts \u0000, which PostgreSQL text and
// jsonb cannot hold. A client's bytes must never be changed silently, so
// every string of a request body (keys included) is checked on the raw
// bytes, and the first bad one is refused naming its field.

// checkText returns a 400 naming the field of the first string in raw (a
// valid JSON document) that is not valid UTF-8, holds an unpaired surrogate
// escape or holds NUL. t is the type raw is decoded into; it turns the
// position of the string into a field name such as "card.holder_name".
func checkText(raw []byte, t reflect.Type) *Error {
	// Fast path: valid UTF-8 with no escape of the form \uXXXX cannot hold
	// any of the three.
	if utf8.Valid(raw) && !bytes.Contains(raw, []byte(`\u`)) {
		return nil
	}
	type frame struct {
		object  bool
		wantKey bool
		key     string
	}
	var stack []frame
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].wantKey = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	for {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return nil // the end, or malformed JSON that json.Unmarshal reports
		}
		switch tok := tok.(type) {
		case json.Delim:
			switch tok {
			case '{':
				stack = append(stack, frame{object: true, wantKey: true})
			case '[':
				stack = append(stack, frame{})
			default:
				stack = stack[:len(stack)-1]
				valueDone()
			}
			continue
		case string:
			isKey := len(stack) > 0 && stack[len(stack)-1].object && stack[len(stack)-1].wantKey
			seg := raw[start:dec.InputOffset()]
			seg = seg[bytes.IndexByte(seg, '"'):] // skip the white space, ',' or ':' before the string
			if !goodString(seg) {
				var keys []string
				for _, f := range stack {
					if f.object && !f.wantKey {
						keys = append(keys, f.key)
					}
				}
				field := fieldPath(t, keys)
				what := "Request body"
				if field != "" {
					what = field
				}
				return BadField(field, what+" must be valid UTF-8 text without NUL")
			}
			if isKey {
				stack[len(stack)-1].key, stack[len(stack)-1].wantKey = tok, false
				continue
			}
		}
		valueDone()
	}
}

// goodString reports whether s, one JSON string literal with its quotes, is
// valid UTF-8 and escapes neither NUL nor a lone surrogate.
func goodString(s []byte) bool {
	if !utf8.Valid(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			continue
		}
		i++ // the escaped character
		if i >= len(s) || s[i] != 'u' {
			continue
		}
		r, ok := hex4(s[i+1:])
		if !ok {
			return false
		}
		i += 4
		switch {
		case r == 0, r >= 0xDC00 && r < 0xE000:
			return false
		case r >= 0xD800 && r < 0xDC00:
			// A high surrogate must be followed by an escaped low one.
			if i+6 >= len(s) || s[i+1] != '\\' || s[i+2] != 'u' {
				return false
			}
			lo, ok := hex4(s[i+3:])
			if !ok || lo < 0xDC00 || lo >= 0xE000 {
				return false
			}
			i += 6
		}
	}
	return true
}

func hex4(s []byte) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range s[:4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// fieldPath names the field that keys lead to in t, the way errors name
// fields elsewhere ("card.holder_name"): a map's keys and array indexes are
// not part of the name ("notes", "events"). A key t does not know is named
// as sent when it is short printable ASCII, else the path stops before it.
func fieldPath(t reflect.Type, keys []string) string {
	var parts []string
	for _, k := range keys {
		for t != nil && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			t = t.Elem()
		}
		if t == nil || t.Kind() != reflect.Struct {
			break
		}
		name, ft, ok := jsonField(t, k)
		if !ok {
			if len(k) <= 64 && IsPrintableASCII(k) {
				parts = append(parts, k)
			}
			break
		}
		parts = append(parts, name)
		t = ft
	}
	return strings.Join(parts, ".")
}

// jsonField finds the field that encoding/json would decode key into
// (names match case-insensitively, as there).
func jsonField(t reflect.Type, key string) (string, reflect.Type, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if strings.EqualFold(name, key) {
			return name, f.Type, true
		}
	}
	return "", nil, false
}

// IsPrintableASCII reports whether s is made only of the printable ASCII
// characters '!' to '~' (no space, no control character, nothing beyond
// ASCII). Credentials and ids are of this shape.
func IsPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '!' || s[i] > '~' {
			return false
		}
	}
	return true
}
