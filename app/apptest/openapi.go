package apptest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"paygate/docs"
)

// Every exchange made through Do is held to docs/openapi.yaml (the embedded
// copy), so the document cannot drift from the code:
//
//   - a request the document describes is validated (path, query, headers
//     such as Idempotency-Key, body, and the security schemes: X-Api-Key +
//     X-Api-Secret, Basic, or the publishable X-Api-Key); one it forbids must
//     not succeed: its answer must be a 4xx;
//   - every answer is validated: its status must be listed for the operation,
//     its headers (Idempotent-Replayed) and body must match;
//   - a known path with a method the document does not list must answer the
//     document's MethodNotAllowed (405 with the envelope); HEAD is checked as
//     the GET it stands for, with an empty body;
//   - a path the document does not know must answer its NotFound (404), and
//     so may a documented one that this process does not serve (a
//     --role=worker process serves only /health, /ready and /metrics).
//
// Checked paths are the API (/api/...) and the operations routes in
// checkedPaths. Everything else (test-only routes such as /test/..., the
// checkout and dashboard pages, /riverui/, /debug/pprof/) is not JSON API and
// is skipped.
//
// To extend: a new /api route is checked as soon as it is served; describe it
// in docs/openapi.yaml. A route that is deliberately not part of the public
// description (an internal JSON endpoint of a page, say) goes into
// Undocumented below, by path prefix, with a comment saying why.
var checkedPaths = []string{"/health", "/ready", "/metrics"}

// Undocumented are path prefixes under /api that the validator skips.
var Undocumented = []string{}

// document is the loaded description and its router.
type document struct {
	doc    *openapi3.T
	router routers.Router
}

var spec = sync.OnceValues(func() (document, error) {
	doc, err := openapi3.NewLoader().LoadFromData(docs.OpenAPIYAML)
	if err != nil {
		return document{}, fmt.Errorf("docs/openapi.yaml: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return document{}, fmt.Errorf("docs/openapi.yaml is not a valid OpenAPI document: %w", err)
	}
	// Match any host: test requests go to example.com.
	doc.Servers = nil
	router, err := gorillamux.NewRouter(doc)
	return document{doc: doc, router: router}, err
})

func checked(path string) bool {
	for _, p := range Undocumented {
		if strings.HasPrefix(path, p) {
			return false
		}
	}
	if strings.HasPrefix(path, "/api/") {
		return true
	}
	for _, p := range checkedPaths {
		if path == p {
			return true
		}
	}
	return false
}

// presence is the security check the document can make: the credentials a
// scheme names are there. Whether they are right is the gateway's business.
func presence(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	r := in.RequestValidationInput.Request
	switch in.SecuritySchemeName {
	case "ApiKey", "PublishableKey":
		if r.Header.Get("X-Api-Key") != "" {
			return nil
		}
	case "ApiSecret":
		if r.Header.Get("X-Api-Secret") != "" {
			return nil
		}
	case "BasicAuth":
		if _, _, ok := r.BasicAuth(); ok {
			return nil
		}
	case "MetricsToken":
		if strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
			return nil
		}
	default:
		return fmt.Errorf("unknown security scheme %q", in.SecuritySchemeName)
	}
	return in.NewError(nil)
}

// CheckOpenAPI holds one exchange to the document; Do calls it for every
// request. body is the request body that was sent.
func CheckOpenAPI(t testing.TB, req *http.Request, body string, rec *httptest.ResponseRecorder) {
	t.Helper()
	if !checked(req.URL.Path) {
		return
	}
	d, err := spec()
	if err != nil {
		t.Errorf("openapi: %v", err)
		return
	}
	what := fmt.Sprintf("%s %s answered %d", req.Method, req.URL.RequestURI(), rec.Code)
	head := req.Method == http.MethodHead
	// A fresh copy of the request: the handler has read the original body.
	vreq := req.Clone(context.Background())
	vreq.Body = io.NopCloser(strings.NewReader(body))
	if head {
		vreq.Method = http.MethodGet
		if rec.Body.Len() > 0 {
			t.Errorf("openapi: %s with a body (%d bytes)", what, rec.Body.Len())
		}
	}
	route, params, err := d.router.FindRoute(vreq)
	switch {
	case errors.Is(err, routers.ErrPathNotFound):
		checkComponent(t, what, d.doc, "NotFound", http.StatusNotFound, rec, head,
			"the document does not describe this path: add it to docs/openapi.yaml (or to apptest.Undocumented)")
		return
	case errors.Is(err, routers.ErrMethodNotAllowed) && req.Method == http.MethodOptions &&
		rec.Code == http.StatusNoContent && rec.Header().Get("Access-Control-Allow-Origin") == "":
		// echo answers OPTIONS on every known path with 204 and Allow (plain
		// HTTP, documented in the document's description); only the
		// publishable routes, which list OPTIONS, add CORS headers.
		return
	case errors.Is(err, routers.ErrMethodNotAllowed):
		checkComponent(t, what, d.doc, "MethodNotAllowed", http.StatusMethodNotAllowed, rec, head,
			"the document does not list this method for the path")
		return
	case err != nil:
		t.Errorf("openapi: %s: %v", what, err)
		return
	}
	opts := &openapi3filter.Options{AuthenticationFunc: presence, IncludeResponseStatus: true, MultiError: true}
	in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route, Options: opts}
	if reqErr := openapi3filter.ValidateRequest(context.Background(), in); reqErr != nil && (rec.Code < 400 || rec.Code >= 500) {
		t.Errorf("openapi: %s, but the document forbids the request (it should answer 4xx): %v", what, reqErr)
	}
	if rec.Code == http.StatusNotFound && route.Operation.Responses.Status(http.StatusNotFound) == nil {
		// The path is not served by this process (a --role=worker process
		// serves only the operations routes): the generic NotFound.
		checkComponent(t, what, d.doc, "NotFound", http.StatusNotFound, rec, head, "")
		return
	}
	respOpts := *opts
	respOpts.ExcludeResponseBody = head
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: rec.Code,
		Header: rec.Header(), Options: &respOpts}
	out.SetBodyBytes(rec.Body.Bytes())
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("openapi: %s, which the document does not allow: %v\nbody: %.500s", what, err, rec.Body.String())
	}
}

// checkComponent checks an answer the router gives without an operation
// (unknown path, wrong method) against the document's shared response name.
func checkComponent(t testing.TB, what string, doc *openapi3.T, name string, status int,
	rec *httptest.ResponseRecorder, head bool, hint string) {
	t.Helper()
	if rec.Code != status {
		t.Errorf("openapi: %s, want %d: %s", what, status, hint)
		return
	}
	if head {
		return
	}
	ref := doc.Components.Responses[name]
	if ref == nil || ref.Value == nil {
		t.Errorf("openapi: components.responses.%s is missing", name)
		return
	}
	mt := ref.Value.Content.Get(rec.Header().Get("Content-Type"))
	if mt == nil || mt.Schema == nil {
		t.Errorf("openapi: %s with Content-Type %q, not in components.responses.%s", what, rec.Header().Get("Content-Type"), name)
		return
	}
	var v any
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Errorf("openapi: %s with a body that is not JSON: %v", what, err)
		return
	}
	if err := mt.Schema.Value.VisitJSON(v, openapi3.EnableJSONSchema2020(), openapi3.VisitAsResponse()); err != nil {
		t.Errorf("openapi: %s, body does not match components.responses.%s: %v", what, name, err)
	}
}
