using System.Globalization;
using System.Text;

namespace Weft.Models.Chat.Jinja;

/// <summary>Python's datetime.strftime in the C locale, for strftime_now (Llama 3.x templates write today's date
/// with "%d %b %Y"); glibc's "%-d" style (no padding) included.</summary>
static class Strftime
{
    public static string Format(DateTime t, string format)
    {
        var c = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        for (int i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 >= format.Length)
            {
                sb.Append(format[i]);
                continue;
            }
            bool unpadded = format[i + 1] == '-' && i + 2 < format.Length;
            char d = format[unpadded ? i + 2 : i + 1];
            i += unpadded ? 2 : 1;
            string Num(int v) => unpadded ? v.ToString(c) : v.ToString("00", c);
            sb.Append(d switch
            {
                'a' => t.ToString("ddd", c),
                'A' => t.ToString("dddd", c),
                'b' or 'h' => t.ToString("MMM", c),
                'B' => t.ToString("MMMM", c),
                'd' => Num(t.Day),
                'e' => t.Day.ToString(c).PadLeft(2),
                'm' => Num(t.Month),
                'y' => Num(t.Year % 100),
                'Y' => t.Year.ToString(c),
                'H' => Num(t.Hour),
                'I' => Num(t.Hour % 12 == 0 ? 12 : t.Hour % 12),
                'M' => Num(t.Minute),
                'S' => Num(t.Second),
                'p' => t.Hour < 12 ? "AM" : "PM",
                'j' => unpadded ? t.DayOfYear.ToString(c) : t.DayOfYear.ToString("000", c),
                'f' => (t.Ticks % TimeSpan.TicksPerSecond / 10).ToString("000000", c),
                'w' => ((int)t.DayOfWeek).ToString(c),
                'F' => t.ToString("yyyy-MM-dd", c),
                'T' => t.ToString("HH:mm:ss", c),
                '%' => "%",
                _ => "%" + (unpadded ? "-" : "") + d,
            });
        }
        return sb.ToString();
    }
}
