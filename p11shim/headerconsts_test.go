package main

import (
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"strconv"
	"strings"
	"testing"
)

// TestHeaderConstants checks the values p11shim/token repeats in Go against the C headers the
// module is built with, and that headerConstants covers every constant of token/consts.go.
func TestHeaderConstants(t *testing.T) {
	hc := headerConstants()
	for _, c := range hc {
		if c.goV != c.cV {
			t.Errorf("%s: token has %#x, the headers %#x", c.name, c.goV, c.cV)
		}
	}

	// The constants consts.go declares: every CK*_ name, and Unavailable.
	fset := gotoken.NewFileSet()
	f, err := parser.ParseFile(fset, "token/consts.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	declared := map[string]bool{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != gotoken.CONST {
			continue
		}
		for _, s := range g.Specs {
			for _, n := range s.(*ast.ValueSpec).Names {
				if strings.HasPrefix(n.Name, "CK") || n.Name == "Unavailable" {
					declared[n.Name] = true
				}
			}
		}
	}
	if len(declared) < 70 {
		t.Fatalf("found only %d constants in token/consts.go", len(declared))
	}

	// Each entry of headerConstants is {"NAME", uint64(token.GONAME), uint64(C.NAME)}: read the
	// three names from the source, so an entry cannot pair two different constants.
	f, err = parser.ParseFile(fset, "headerconsts.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	entries := 0
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.CompositeLit)
		if !ok || len(lit.Elts) != 3 {
			return true
		}
		entries++
		name, goName, cName := stringLit(lit.Elts[0]), selector(lit.Elts[1], "token"), selector(lit.Elts[2], "C")
		want := goName
		if goName == "Unavailable" {
			want = "CK_UNAVAILABLE_INFORMATION"
		}
		if name == "" || name != want || cName != want {
			t.Errorf("%s: entry {%q, token.%s, C.%s} does not name one constant", fset.Position(lit.Pos()), name, goName, cName)
		}
		if listed[goName] {
			t.Errorf("token.%s listed twice", goName)
		}
		listed[goName] = true
		return false
	})
	if entries != len(hc) {
		t.Errorf("read %d entries from headerconsts.go, headerConstants returns %d", entries, len(hc))
	}
	for n := range declared {
		if !listed[n] {
			t.Errorf("token.%s is not checked against the headers: add it to headerConstants", n)
		}
	}
	for n := range listed {
		if !declared[n] {
			t.Errorf("headerConstants lists token.%s, which consts.go does not declare", n)
		}
	}
}

func stringLit(e ast.Expr) string {
	b, ok := e.(*ast.BasicLit)
	if !ok || b.Kind != gotoken.STRING {
		return ""
	}
	s, err := strconv.Unquote(b.Value)
	if err != nil {
		return ""
	}
	return s
}

// selector returns NAME of uint64(pkg.NAME), or "".
func selector(e ast.Expr, pkg string) string {
	call, ok := e.(*ast.CallExpr)
	if !ok || len(call.Args) != 1 {
		return ""
	}
	sel, ok := call.Args[0].(*ast.SelectorExpr)
	if !ok {
		return ""
	}
	if x, ok := sel.X.(*ast.Ident); !ok || x.Name != pkg {
		return ""
	}
	return sel.Sel.Name
}
