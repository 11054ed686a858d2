package web

import (
	"fmt"
	"net/http"
)

// Code is one entry of the error vocabulary of API.md. Every error a client
// sees carries exactly one of these codes.
type Code string

const (
	CodeBadRequest          Code = "BAD_REQUEST_ERROR"
	CodeInvalidVPA          Code = "INVALID_VPA"
	CodeInvalidCard         Code = "INVALID_CARD"
	CodeExpiredCard         Code = "EXPIRED_CARD"
	CodeUnauthorized        Code = "UNAUTHORIZED"
	CodeNotFound            Code = "NOT_FOUND"
	CodeIdempotencyConflict Code = "IDEMPOTENCY_CONFLICT"
	CodeIdempotencyReused   Code = "IDEMPOTENCY_KEY_REUSED"
	CodeRateLimited         Code = "RATE_LIMITED"
	CodeInternal            Code = "INTERNAL_ERROR"
	CodeUnavailable         Code = "SERVICE_UNAVAILABLE"
)

// statusOf is the one place where a code becomes an HTTP status. An Error may
// override it (405 and 413 are BAD_REQUEST_ERROR with their own status).
var statusOf = map[Code]int{
	CodeBadRequest:          http.StatusBadRequest,
	CodeInvalidVPA:          http.StatusBadRequest,
	CodeInvalidCard:         http.StatusBadRequest,
	CodeExpiredCard:         http.StatusBadRequest,
	CodeUnauthorized:        http.StatusUnauthorized,
	CodeNotFound:            http.StatusNotFound,
	CodeIdempotencyConflict: http.StatusConflict,
	CodeIdempotencyReused:   http.StatusUnprocessableEntity,
	CodeRateLimited:         http.StatusTooManyRequests,
	CodeInternal:            http.StatusInternalServerError,
	CodeUnavailable:         http.StatusServiceUnavailable,
}

// Error is a client-facing error: what went wrong in words the client can act
// on. Anything that is not an *Error is unexpected and answered as 500.
type Error struct {
	Code        Code   `json:"code"`
	Description string `json:"description"`
	Field       string `json:"field,omitempty"`
	// Status overrides the status of Code when non-zero.
	Status int `json:"-"`
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s (%s)", e.Code, e.Description, e.Field)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Description)
}

// HTTPStatus is the status the error is answered with.
func (e *Error) HTTPStatus() int {
	if e.Status != 0 {
		return e.Status
	}
	if s, ok := statusOf[e.Code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Errorf builds an *Error with no field.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Description: fmt.Sprintf(format, args...)}
}

// FieldError builds an *Error blaming one input field.
func FieldError(code Code, field, description string) *Error {
	return &Error{Code: code, Description: description, Field: field}
}

// BadField is the common case: a missing or invalid field.
func BadField(field, description string) *Error {
	return FieldError(CodeBadRequest, field, description)
}

// NotFound answers an unknown object, and another merchant's object alike.
func NotFound(what string) *Error {
	return Errorf(CodeNotFound, "%s not found", what)
}
