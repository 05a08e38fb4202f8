package config

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// decodeStrict decodes the YAML document b into out (a *Node) with
// yaml.v3's Decoder and KnownFields(true): an unknown field, a repeated
// field or a value of the wrong type is an error. yaml's messages name the
// line and the Go type ("line 5: cannot unmarshal !!str `two` into int");
// explain rewrites the first into the words of the config: the field by
// its path (volumes[0].w, found at that line in doc), what it wants, and
// the fields known where one is unknown.
func decodeStrict(b []byte, doc *yaml.Node, out *Node) error {
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: top level: want a mapping of fields", top.Line)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	err := dec.Decode(out)
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		return explain(te.Errors[0], top)
	}
	return err
}

// yamlErr is one of yaml.TypeError's lines: its line number and message.
var yamlErr = regexp.MustCompile(`^line (\d+): (.*)$`)

// The messages of yaml.v3 explain knows.
var (
	unknownErr  = regexp.MustCompile(`^field (\S+) not found in type (\S+)$`)
	repeatedErr = regexp.MustCompile(`^mapping key "(.*)" already defined at line (\d+)$`)
	typeErr     = regexp.MustCompile("^cannot unmarshal !!\\w+(?: `(.*)`)? into (\\S+)$")
)

// explain turns one of yaml's errors into "line N: PATH: what is wrong";
// one it does not know keeps yaml's words, with the path.
func explain(msg string, top *yaml.Node) error {
	m := yamlErr.FindStringSubmatch(msg)
	if m == nil {
		return errors.New(msg)
	}
	line, _ := strconv.Atoi(m[1])
	what, want := m[2], ""
	if u := unknownErr.FindStringSubmatch(what); u != nil {
		what, want = "unknown field (known: "+knownFields(u[2])+")", u[1]
	} else if r := repeatedErr.FindStringSubmatch(what); r != nil {
		what, want = "given twice (first at line "+r[2]+")", r[1]
	} else if t := typeErr.FindStringSubmatch(what); t != nil {
		what, want = "want "+describe(t[2]), t[1]
		if t[1] != "" {
			what += fmt.Sprintf(", got %q", t[1])
		}
	}
	path := pathAt(top, line, want)
	if path == "" {
		path = "top level"
	}
	return fmt.Errorf("line %d: %s: %s", line, path, what)
}

// pathAt is the path (volumes[0].w) of the first key or list item written
// at line in n, in the order of the file, preferring the one that is, or
// whose value is, want (several are on one line in flow style:
// "{name: v, w: x}"); "" if none is.
func pathAt(n *yaml.Node, line int, want string) string {
	if p := findAt(n, line, want, ""); p != "" || want == "" {
		return p
	}
	return findAt(n, line, "", "")
}

func findAt(n *yaml.Node, line int, want, path string) string {
	is := func(k, v *yaml.Node) bool {
		return k.Line == line && (want == "" || k.Value == want || v.Value == want)
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := joinPath(path, k.Value)
			if is(k, v) {
				return p
			}
			if p := findAt(v, line, want, p); p != "" {
				return p
			}
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			if is(item, item) {
				return p
			}
			if p := findAt(item, line, want, p); p != "" {
				return p
			}
		}
	}
	return ""
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// configTypes are the types a config is made of, by the name yaml's
// errors give them, for the list of known fields.
var configTypes = map[string]reflect.Type{
	"config.Node":   reflect.TypeFor[Node](),
	"config.Volume": reflect.TypeFor[Volume](),
	"config.TLS":    reflect.TypeFor[TLS](),
}

// knownFields lists the YAML names of the fields of the type yaml's error
// named, in their order.
func knownFields(typeName string) string {
	t, ok := configTypes[typeName]
	if !ok {
		return "see docs/configuration.md"
	}
	var names []string
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); tag != "" && tag != "-" {
			names = append(names, tag)
		}
	}
	return strings.Join(names, ", ")
}

// describe names what a Go type (as yaml's errors spell it) wants.
func describe(goType string) string {
	switch {
	case goType == "time.Duration":
		return "a duration like 5s or 1m30s"
	case goType == "string":
		return "a string"
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "int"):
		return "an integer"
	case strings.HasPrefix(goType, "uint"):
		return "a non-negative integer"
	case strings.HasPrefix(goType, "[]") || goType == "config.List":
		return "a list"
	case configTypes[goType] != nil:
		return "a mapping of fields"
	}
	return "a " + goType
}

// List is a list of strings in the config (replicas, options): a YAML
// sequence, or one comma-separated string ("a:7400,b:7400,c:7400").
type List []string

// UnmarshalYAML implements yaml.Unmarshaler.
func (l *List) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*l = SplitReplicas(n.Value)
		return nil
	}
	return n.Decode((*[]string)(l))
}

// UnmarshalYAML implements yaml.Unmarshaler: a size as ParseBytes reads
// it ("64MiB"), its error at the value's line, as yaml's own.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: want a single value", n.Line)}}
	}
	if err := b.Set(n.Value); err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	return nil
}
