package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// stringSetter is a value read from one string (pflag.Value: ByteSize...).
type stringSetter interface{ Set(string) error }

// decodeStrict decodes n into out (a pointer) field by field, so that an
// unknown field, a repeated field or a value of the wrong type is an error
// naming the field by its path (volumes[0].w) and its line.
func decodeStrict(n *yaml.Node, out any, path string) error {
	return decodeValue(n, reflect.ValueOf(out).Elem(), path)
}

func decodeValue(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Tag == "!!null" {
		return nil // an empty value keeps the default
	}
	if s, ok := v.Addr().Interface().(stringSetter); ok {
		if n.Kind != yaml.ScalarNode {
			return fieldErr(n, path, "want a single value")
		}
		if err := s.Set(n.Value); err != nil {
			return fieldErr(n, path, err.Error())
		}
		return nil
	}
	switch v.Kind() {
	case reflect.Struct:
		return decodeStruct(n, v, path)
	case reflect.Slice:
		return decodeSlice(n, v, path)
	}
	if n.Kind != yaml.ScalarNode {
		return fieldErr(n, path, "want "+describe(v.Type()))
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		return fieldErr(n, path, fmt.Sprintf("want %s, got %q", describe(v.Type()), n.Value))
	}
	return nil
}

func decodeStruct(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind != yaml.MappingNode {
		return fieldErr(n, path, "want a mapping of fields")
	}
	fields := map[string]int{}
	for i := 0; i < v.NumField(); i++ {
		if tag, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ","); tag != "" && tag != "-" {
			fields[tag] = i
		}
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		fpath := joinPath(path, k.Value)
		idx, ok := fields[k.Value]
		if !ok {
			return fieldErr(k, fpath, "unknown field (known: "+knownFields(fields)+")")
		}
		if seen[k.Value] {
			return fieldErr(k, fpath, "given twice")
		}
		seen[k.Value] = true
		if err := decodeValue(val, v.Field(idx), fpath); err != nil {
			return err
		}
	}
	return nil
}

// decodeSlice reads a sequence; a list of strings may also be given as one
// comma-separated string ("a:7400,b:7400,c:7400").
func decodeSlice(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind == yaml.ScalarNode && v.Type().Elem().Kind() == reflect.String {
		parts := SplitReplicas(n.Value)
		v.Set(reflect.ValueOf(parts).Convert(v.Type()))
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return fieldErr(n, path, "want a list")
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		if err := decodeValue(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
			return err
		}
	}
	v.Set(s)
	return nil
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func knownFields(fields map[string]int) string {
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return fields[names[i]] < fields[names[j]] })
	return strings.Join(names, ", ")
}

func fieldErr(n *yaml.Node, path, msg string) error {
	if path == "" {
		path = "top level"
	}
	return fmt.Errorf("line %d: %s: %s", n.Line, path, msg)
}

// describe names what a Go type wants, for errors.
func describe(t reflect.Type) string {
	if t == reflect.TypeOf(time.Duration(0)) {
		return "a duration like 5s or 1m30s"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	}
	return "a " + t.String()
}
