package dashboard

import (
	"context"
	"net/http"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"paygate/db"
	"paygate/merchants"
	"paygate/web"
)

// ChartDays is how many days the home page's chart covers, today included.
const ChartDays = 14

// Stats is the home page's summary of a merchant's payments.
type Stats struct {
	TotalTransactions int64 `json:"total_transactions"`
	Succeeded         int64 `json:"succeeded"`
	Failed            int64 `json:"failed"`
	// SuccessRate is succeeded / (succeeded + failed), pending payments left
	// out until they are decided; null while nothing has been decided.
	SuccessRate *float64 `json:"success_rate"`
	// Collected is the amount of successful payments per currency, largest
	// first; the first is the currency the chart's amounts are in.
	Collected []Amount `json:"collected"`
	Daily     []Day    `json:"daily"`
}

// Amount is a sum in one currency's minor unit.
type Amount struct {
	Currency string `json:"currency"`
	Amount   int64  `json:"amount"`
}

// Day is one UTC day of the chart.
type Day struct {
	Date      string `json:"date"`
	Payments  int64  `json:"payments"`
	Succeeded int64  `json:"succeeded"`
	Failed    int64  `json:"failed"`
	// Amount collected that day in the first currency of Collected.
	Amount int64 `json:"amount"`
}

// Stats: GET /dashboard/api/stats.
func (d *Dashboard) Stats(c echo.Context) error {
	s, err := stats(c.Request().Context(), d.Pool, merchants.FromContext(c).ID)
	if err != nil {
		return err
	}
	return web.JSON(c, http.StatusOK, s)
}

// maxSum is where the sums of amounts stop: a bigint's largest value.
// Amounts are at most 2^53 − 1, so only over a thousand of the largest
// could reach it; the dashboard then shows this rather than fail.
const maxSum = "9223372036854775807"

func stats(ctx context.Context, q db.Querier, merchantID uuid.UUID) (Stats, error) {
	var s Stats
	err := q.QueryRow(ctx, `
		SELECT count(*), count(*) FILTER (WHERE status = 'success'), count(*) FILTER (WHERE status = 'failed')
		FROM payments WHERE merchant_id = $1`, merchantID).Scan(&s.TotalTransactions, &s.Succeeded, &s.Failed)
	if err != nil {
		return Stats{}, err
	}
	if decided := s.Succeeded + s.Failed; decided > 0 {
		rate := float64(s.Succeeded) / float64(decided)
		s.SuccessRate = &rate
	}
	rows, _ := q.Query(ctx, `
		SELECT currency, least(sum(amount), `+maxSum+`)::bigint AS amount FROM payments
		WHERE merchant_id = $1 AND status = 'success'
		GROUP BY currency ORDER BY 2 DESC, 1`, merchantID)
	if s.Collected, err = pgx.CollectRows(rows, pgx.RowToStructByName[Amount]); err != nil {
		return Stats{}, err
	}
	currency := "INR"
	if len(s.Collected) > 0 {
		currency = s.Collected[0].Currency
	}
	// Days are UTC calendar days, like every timestamp the API shows.
	rows, _ = q.Query(ctx, `
		SELECT to_char(d, 'YYYY-MM-DD') AS date,
		       count(p.id) AS payments,
		       count(p.id) FILTER (WHERE p.status = 'success') AS succeeded,
		       count(p.id) FILTER (WHERE p.status = 'failed') AS failed,
		       least(coalesce(sum(p.amount) FILTER (WHERE p.status = 'success' AND p.currency = $2), 0), `+maxSum+`)::bigint AS amount
		FROM generate_series(date_trunc('day', now() AT TIME ZONE 'UTC') - make_interval(days => $3 - 1),
		                     date_trunc('day', now() AT TIME ZONE 'UTC'), interval '1 day') AS d
		LEFT JOIN payments p ON p.merchant_id = $1
		      AND p.created_at >= d AT TIME ZONE 'UTC' AND p.created_at < (d + interval '1 day') AT TIME ZONE 'UTC'
		GROUP BY d ORDER BY d`, merchantID, currency, ChartDays)
	if s.Daily, err = pgx.CollectRows(rows, pgx.RowToStructByName[Day]); err != nil {
		return Stats{}, err
	}
	if s.Collected == nil {
		s.Collected = []Amount{}
	}
	return s, nil
}
