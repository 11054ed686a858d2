package docs_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/stretchr/testify/require"

	"paygate/docs"
)

// The served document is a valid OpenAPI 3.1 document, in both forms.
func TestOpenAPIDocumentIsValid(t *testing.T) {
	t.Parallel()
	fromYAML, err := openapi3.NewLoader().LoadFromData(docs.OpenAPIYAML)
	require.NoError(t, err)
	require.NoError(t, fromYAML.Validate(context.Background()))
	require.True(t, fromYAML.IsOpenAPI31OrLater())

	js, err := docs.OpenAPIJSON()
	require.NoError(t, err)
	require.True(t, json.Valid(js))
	fromJSON, err := openapi3.NewLoader().LoadFromData(js)
	require.NoError(t, err)
	require.NoError(t, fromJSON.Validate(context.Background()))
	require.Equal(t, fromYAML.Paths.Len(), fromJSON.Paths.Len())
	require.Equal(t, len(fromYAML.Components.Schemas), len(fromJSON.Components.Schemas))
}
