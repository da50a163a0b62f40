package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/reprov/reprov/agent/store"
)

// tokenCreateOptions are the options of `reprov token create`.
type tokenCreateOptions struct {
	Name string
	Role string
}

func newTokenCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke the API tokens of reprov serve (only their hashes are stored)",
	}
	var co tokenCreateOptions
	create := &cobra.Command{
		Use:   "create --role viewer|operator --name NAME",
		Short: "Create an API token and print it once, alone on the last line of stdout",
		Long: `Create an API token for reprov serve. The token is printed once, alone on the
last line of stdout (TOKEN=$(reprov token create ...) keeps it); only its hash
is stored, so it cannot be shown again. viewer may read everything; operator may
also create and cancel runs and jobs and clear learned quirks.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runTokenCreate(cmd.Context(), a, co) },
	}
	create.Flags().StringVar(&co.Name, "name", "", "who or what the token is for (unique; shown in logs instead of the token)")
	create.Flags().StringVar(&co.Role, "role", "", "viewer (read) or operator (read, create, cancel)")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the API tokens: name, role, created, last used, revoked",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return runTokenList(cmd.Context(), a) },
	}
	revoke := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke an API token at once",
		Args:  cobra.ExactArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return runTokenRevoke(cmd.Context(), a, args[0]) },
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func runTokenCreate(ctx context.Context, a *app, o tokenCreateOptions) error {
	if o.Name == "" {
		return usagef("token create: --name is required")
	}
	role := store.Role(o.Role)
	if !role.Valid() {
		return usagef("token create: --role %q: want viewer or operator", o.Role)
	}
	st, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	tok, info, err := st.CreateToken(ctx, o.Name, role)
	if err != nil {
		// A taken name or a bad name: the operator's to fix.
		return usageError(err)
	}
	if a.jsonOutput() {
		return a.writeJSON(map[string]any{"name": info.Name, "role": info.Role, "created": info.Created, "token": tok})
	}
	fmt.Fprintf(a.stderr, "token %s (%s) created; it is shown once, on the next line: keep it now\n", info.Name, info.Role)
	fmt.Fprintln(a.stdout, tok)
	return nil
}

func runTokenList(ctx context.Context, a *app) error {
	st, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	toks, err := st.Tokens(ctx)
	if err != nil {
		return failedError(err)
	}
	if a.jsonOutput() {
		if toks == nil {
			toks = []store.Token{}
		}
		return a.writeJSON(toks)
	}
	rows := make([][]string, 0, len(toks))
	for _, t := range toks {
		rows = append(rows, []string{t.Name, string(t.Role), localTime(t.Created), localTime(t.LastUsed), localTime(t.Revoked)})
	}
	return a.table([]string{"NAME", "ROLE", "CREATED", "LAST USED", "REVOKED"}, rows)
}

func localTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format(time.RFC3339)
}

func runTokenRevoke(ctx context.Context, a *app, name string) error {
	st, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.RevokeToken(ctx, name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return usageError(err)
		}
		return failedError(err)
	}
	fmt.Fprintf(a.stdout, "token %s revoked\n", name)
	return nil
}
