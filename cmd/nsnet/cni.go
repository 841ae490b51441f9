package main

import (
	"fmt"
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/nsnet/nsnet/internal/agent"
	"github.com/nsnet/nsnet/internal/cliout"
	"github.com/nsnet/nsnet/internal/cni"
	"github.com/nsnet/nsnet/internal/engine"
	"github.com/nsnet/nsnet/internal/store"
)

// cniMain speaks CNI instead of the command line: the nsnet binary,
// installed (or linked) as "nsnet" in a runtime's CNI bin directory, is
// the plugin of type nsnet.
func cniMain() {
	store.Waiting = func(string) {} // stderr is the runtime's log; waiting is normal
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add: func(args *skel.CmdArgs) error {
			return withCNI(args, func(m *engine.Manager, c *cni.Config) error {
				r, err := cni.Add(m, c, args)
				if err != nil {
					return err
				}
				return types.PrintResult(r, c.CNIVersion)
			})
		},
		Del: func(args *skel.CmdArgs) error {
			return withCNI(args, func(m *engine.Manager, c *cni.Config) error { return cni.Del(m, c, args) })
		},
		Check: func(args *skel.CmdArgs) error {
			return withCNI(args, func(m *engine.Manager, c *cni.Config) error { return cni.Check(m, c, args) })
		},
		GC: func(args *skel.CmdArgs) error {
			return withCNI(args, func(m *engine.Manager, c *cni.Config) error { return cni.GC(m, c) })
		},
		Status: func(args *skel.CmdArgs) error {
			return withCNI(args, func(m *engine.Manager, c *cni.Config) error { return cni.Status(m, c) })
		},
	}, cni.Versions, "nsnet: nsnet networks for container runtimes")
}

// withCNI opens the configuration's state directory for one verb and, as
// every nsnet command does, leaves the DNS agent serving the change.
func withCNI(args *skel.CmdArgs, fn func(*engine.Manager, *cni.Config) error) error {
	c, err := cni.Load(args.StdinData)
	if err != nil {
		return err
	}
	m, err := engine.Open(engine.Config{StateDir: c.StateDir})
	if err != nil {
		return types.NewError(types.ErrIOFailure, "nsnet: "+err.Error(), "")
	}
	ferr := fn(m, c)
	need, nerr := m.AgentNeeded()
	gen, gerr := m.Generation()
	m.Close()
	if ferr != nil || nerr != nil || gerr != nil {
		return ferr
	}
	// The agent is this binary too: without CNI_COMMAND it is nsnet.
	for _, v := range []string{"CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"} {
		os.Unsetenv(v)
	}
	exe, err := os.Executable()
	if err == nil && need {
		err = agent.Ensure(c.StateDir, exe)
	}
	if err == nil && (need || agent.Running(c.StateDir)) {
		err = agent.Wait(c.StateDir, gen, need, agentWait)
	}
	if err != nil {
		// The attachment is made; its names may not resolve yet.
		fmt.Fprintln(os.Stderr, "nsnet: warning: DNS agent: "+cliout.OneLine(err.Error()))
	}
	return nil
}
