package runner

import (
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Platform properties that the Sandbox runner reads from an action. The
// names and values are case-sensitive. A worker announces the values it
// supports (see Sandbox.Properties), so the scheduler only hands it
// actions it can run; the runner still checks, since a worker may be
// configured by hand.
const (
	// PropertySandbox selects the sandbox mode. Absent means SandboxHost.
	PropertySandbox = "sandbox"
	// SandboxHost: the host's root filesystem read-only, the build
	// directory writable at its own path, a private /tmp, a minimal /dev
	// and the action's own /proc. What Bazel's auto-configured toolchains
	// need (they call /usr/bin/gcc).
	SandboxHost = "host"
	// SandboxHermetic: the input root is the whole filesystem ("/"), plus
	// a minimal /dev, the action's own /proc and an empty /tmp. Input
	// files at dev/, proc/ or tmp/ of the input root are hidden by them.
	// The toolchain must be part of the input root.
	SandboxHermetic = "hermetic"

	// PropertyNetwork selects the network. Absent means NetworkOff.
	PropertyNetwork = "network"
	// NetworkOff: a network namespace of its own with only loopback up.
	NetworkOff = "off"
	// NetworkOn: the host's network. Only on workers that permit it
	// (SandboxConfig.AllowNetwork); elsewhere FAILED_PRECONDITION.
	NetworkOn = "on"
)

// sandboxMode is how much of the host an action sees.
type sandboxMode int

const (
	modeHost sandboxMode = iota
	modeHermetic
)

func (m sandboxMode) String() string {
	if m == modeHermetic {
		return SandboxHermetic
	}
	return SandboxHost
}

// sandboxOptions is what an action's platform asks of the sandbox.
type sandboxOptions struct {
	mode    sandboxMode
	network bool
}

// parsePlatform reads the sandbox properties of an action. Other
// properties are the scheduler's business and are ignored. A property
// given twice must have one value. Unknown values are InvalidArgument;
// network=on on a worker that does not allow it is FailedPrecondition (no
// worker of the right kind ran the action).
func parsePlatform(props []*repb.Platform_Property, allowNetwork bool) (sandboxOptions, error) {
	var opts sandboxOptions
	var mode, network string
	for _, p := range props {
		var seen *string
		switch p.GetName() {
		case PropertySandbox:
			seen = &mode
		case PropertyNetwork:
			seen = &network
		default:
			continue
		}
		if *seen != "" && *seen != p.GetValue() {
			return opts, status.Errorf(codes.InvalidArgument, "platform property %q has two values, %q and %q", p.GetName(), *seen, p.GetValue())
		}
		*seen = p.GetValue()
	}
	switch mode {
	case "", SandboxHost:
		opts.mode = modeHost
	case SandboxHermetic:
		opts.mode = modeHermetic
	default:
		return opts, status.Errorf(codes.InvalidArgument, "platform property %s=%q: want %q or %q", PropertySandbox, mode, SandboxHost, SandboxHermetic)
	}
	switch network {
	case "", NetworkOff:
	case NetworkOn:
		if !allowNetwork {
			return opts, status.Errorf(codes.FailedPrecondition, "platform property %s=%s: this worker does not permit network access (kiln worker --sandbox-network)", PropertyNetwork, NetworkOn)
		}
		opts.network = true
	default:
		return opts, status.Errorf(codes.InvalidArgument, "platform property %s=%q: want %q or %q", PropertyNetwork, network, NetworkOff, NetworkOn)
	}
	return opts, nil
}
