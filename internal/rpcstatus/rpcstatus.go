// Package rpcstatus wraps errors as gRPC statuses while keeping their code.
//
// An error is classified once, where it arises (status.Errorf with a chosen
// code). Layers above add context with Wrap/Wrapf, which prefix the message
// and keep the code, so a chain reads like a path: "shard b: read 3a7f…: not
// found". WrapWithCode changes the code at a real semantic boundary.
package rpcstatus

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Wrap prefixes the message of err with msg and keeps its gRPC code. Errors
// that carry no status are treated as codes.Unknown, except context errors,
// which map to Canceled and DeadlineExceeded. Details attached to the status
// (such as a PreconditionFailure) are kept.
func Wrap(err error, msg string) error {
	if err == nil {
		return nil
	}
	s := FromError(err)
	p := s.Proto()
	p.Message = msg + ": " + p.Message
	return status.ErrorProto(p)
}

// Wrapf is Wrap with a format string.
func Wrapf(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return Wrap(err, fmt.Sprintf(format, args...))
}

// WrapWithCode is Wrap, but replaces the code with c. Use it only at a
// semantic boundary, for example when a missing blob of an input root turns
// into a failed precondition of Execute.
func WrapWithCode(err error, c codes.Code, format string, args ...any) error {
	if err == nil {
		return nil
	}
	s := FromError(err)
	p := s.Proto()
	p.Code = int32(c)
	p.Message = fmt.Sprintf(format, args...) + ": " + p.Message
	return status.ErrorProto(p)
}

// FromError returns the status carried by err. Context errors, bare or
// wrapped, become Canceled or DeadlineExceeded; other non-status errors become
// Unknown with the error's text.
func FromError(err error) *status.Status {
	if s, ok := status.FromError(err); ok {
		return s
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, err.Error())
	}
	return status.New(codes.Unknown, err.Error())
}

// FromContext returns the status error for a finished context, or nil while
// ctx is still live.
func FromContext(ctx context.Context) error {
	err := ctx.Err()
	if err == nil {
		return nil
	}
	return FromError(err).Err()
}

// Code returns the gRPC code of err (codes.OK for nil).
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	return FromError(err).Code()
}

// IsNotFound reports whether err is a NotFound status.
func IsNotFound(err error) bool { return Code(err) == codes.NotFound }
