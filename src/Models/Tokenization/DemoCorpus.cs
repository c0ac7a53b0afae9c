namespace Weft.Models.Tokenization;

/// <summary>Plain English prose the demo vocabularies learn their merges from (written for this project).</summary>
static class DemoCorpus
{
    public const string Text = """
        The morning was quiet when the first train came into the station. People stood on the platform with their
        coffee and their phones, and nobody said very much. A woman in a green coat looked at the clock, then at the
        sky, and decided that it would rain before noon. She was right, as she usually was about the weather.

        In the small town where she lived, everyone knew everyone else. The baker opened his shop at six o'clock every
        day except Sunday, and the smell of fresh bread filled the street. Children walked to school in groups of
        three or four, talking about games, homework, and the dog that had followed them home the week before. The
        teacher, Mr. Hall, had been teaching for twenty-five years, and he still liked the first day of the year best.

        "Good morning," he said to the class. "Today we are going to talk about water. Where does it come from, and
        where does it go?" A boy in the back raised his hand. "From the sky," he said. "And then it goes into the
        river, and the river goes to the sea." The teacher smiled. "That is a very good start. But what happens
        after that? How does the water get back into the sky?" Nobody answered for a while, and then a girl near the
        window said that the sun makes the water warm, and warm water turns into vapor that rises and becomes clouds.

        Science is often like that: a simple question, a first answer, and then another question. People have always
        wanted to understand the world around them. They watched the stars and the seasons, they counted the days
        between the full moons, and they learned when to plant and when to harvest. Over thousands of years these
        observations grew into mathematics, astronomy, medicine, and engineering. Today a single laptop can compute
        more in one second than all the people of the ancient world could compute in a lifetime.

        Computers do exactly what they are told, which is both their strength and their weakness. A program is a list
        of instructions, written in a language that a machine can follow. When the instructions are clear, the
        computer will repeat them a billion times without getting tired. When they are wrong, it will repeat the
        mistake just as faithfully. That is why programmers spend so much time reading, testing, and debugging their
        code. A good test describes what the program should do, runs it, and checks the result. If the result is
        different, the test fails, and the programmer has to find out why.

        Consider a function that adds two numbers. It takes the first number and the second number, and it returns
        their sum. For example, if we call add(2, 3), we expect the answer 5. If we call add(10, -4), we expect 6.
        Simple functions like this are easy to test, but real systems are made of thousands of functions that depend
        on each other. A change in one place can break something far away. Large projects therefore use version
        control, code review, continuous integration, and careful documentation, so that many people can work on the
        same code without stepping on each other's toes.

        Language models are programs that learn to predict the next word in a text. They read a very large amount of
        writing, and they adjust millions or billions of numbers, called parameters, until their predictions become
        good. Before a model can read text, the text has to be split into pieces called tokens. A token can be a whole
        word, part of a word, a single letter, or even a single byte. Common words such as "the", "and", "of", and
        "water" usually become one token each, while rare words are split into several smaller pieces. The list of
        all the pieces a model knows is its vocabulary, and the rules for splitting text are its tokenizer.

        When you ask a question, the model reads the tokens of your question one after another, and then it writes
        its answer one token at a time. Each new token depends on all the tokens before it. Generating a long answer
        therefore takes many steps, and every step has to read the whole model from memory. That is why serving a
        model to many people at once is mostly a question of memory bandwidth: if the model reads its weights once
        and uses them for many conversations in the same step, the machine does much more useful work.

        The history of the town is older than most of its people realize. There was a mill on the river more than
        three hundred years ago, and a bridge of stone that still stands today. In the summer, families walk along
        the river to the old bridge and have a picnic in the meadow. They bring bread, cheese, apples, and cold tea,
        and they watch the boats go by. In the winter, when the river freezes, the children skate on the ice near the
        bank, where the water is shallow and the ice is thick. Their parents stand on the shore with warm drinks and
        tell them not to go too far.

        The library is in a red brick building next to the town hall. It has a reading room with tall windows, long
        wooden tables, and green lamps. On a rainy afternoon it is the best place in town. Students come to study,
        old men come to read the newspaper, and a small group meets every Thursday evening to talk about a book.
        Last month they read a novel about a ship that was lost at sea for two years. The sailors had to find food,
        fix the ship, and decide whom to trust. Some of the readers loved the story and some found it too slow, but
        everyone agreed that the ending was a surprise.

        Cooking is another kind of science. When you heat butter in a pan, add an onion, and wait, the sugar in the
        onion turns brown and the kitchen fills with a sweet smell. Bread rises because yeast eats sugar and makes
        gas. Water boils at one hundred degrees at sea level, but at a lower temperature high in the mountains,
        which is why pasta takes longer to cook there. A good cook learns these rules, then learns when to break them.

        Travel changes the way people see their own home. After a long journey, familiar streets look different: the
        houses seem smaller, the trees taller, the sounds quieter. Some travelers come back with stories, some with
        photographs, and some with nothing but a feeling that they cannot explain. Many of them say that the most
        important part of a journey is not the place you visit, but the people you meet and the questions they ask.

        Health depends on simple things that are hard to do every day: sleeping enough, eating well, walking, and
        spending time with friends. Doctors and nurses work long hours to help people who are sick, and researchers
        study how diseases spread and how they can be prevented. Clean water, vaccines, and good food have done more
        for human health than almost any other invention in history.

        Music is made of patterns in time. A melody rises and falls, a rhythm repeats and changes, and harmony adds
        depth when several notes sound together. Some people learn to play the piano or the guitar as children, others
        start much later. It is never too late to learn, although it does take patience. The first weeks are the
        hardest, because your fingers do not yet know where to go, and every song sounds slow and careful.

        In business, a company sells products or services to customers and tries to earn more money than it spends.
        It has to understand what people need, set prices, hire workers, and plan for the future. Markets change
        quickly, and a company that does not adapt may fail. Good managers listen to their employees and to their
        customers, they make decisions with the information they have, and they are honest when things go wrong.

        Politics is the way a community decides what to do together. In a democracy, citizens vote for the people who
        will represent them, and those representatives make laws, collect taxes, and build roads, schools, and
        hospitals. People often disagree about what is fair and what is possible, and public debate is how those
        disagreements are discussed in the open. A free press, independent courts, and regular elections help keep
        power accountable.

        Animals have their own ways of living in the world. Birds fly south in the autumn and return in the spring.
        Bees visit flowers and carry pollen from one plant to another, which helps fruit and vegetables grow. Cats
        sleep for most of the day and hunt at night, while dogs like to be with people and learn their habits. In the
        forest there are deer, foxes, owls, and many small creatures that most visitors never see.

        The question that the teacher asked at the beginning still has no final answer, because every answer opens a
        new question. Why does the sun shine? How did life begin? What is time? These questions have kept people
        awake at night for as long as there have been people. Perhaps that is the most human thing of all: to look
        at the world, to wonder about it, and to keep asking why.

        She opened the door, took off her wet coat, and put the kettle on. Outside, the rain was falling steadily
        now, and the street lights came on one by one. It had been a long day, but a good one. Tomorrow she would
        write the letter she had been putting off for weeks, call her brother, and maybe, if the weather cleared,
        walk down to the river to see the old bridge again. For now, she sat by the window with a cup of tea and a
        book, and listened to the rain.

        Numbers appear everywhere in daily life. A recipe asks for 250 grams of flour, 3 eggs, and 1.5 cups of milk.
        A train leaves at 7:45 and arrives at 9:10. The year 2024 had 366 days, and the temperature yesterday was 18
        degrees. The price of a book is $12.99, and a phone number has ten digits. Computers store all of these
        numbers as bits, ones and zeros, and a kilobyte is 1024 bytes.

        Here is a short piece of code that counts words:

            def count_words(text):
                counts = {}
                for word in text.split():
                    counts[word] = counts.get(word, 0) + 1
                return counts

            for (int i = 0; i < items.Length; i++)
            {
                if (items[i] == null) continue;
                total += items[i].Value;
            }

        Questions, answers, and conversations are at the heart of learning. "What do you think?" she asked. "I don't
        know yet," he said, "but I'll find out. We're going to try again tomorrow, and they've promised to help."
        """;
}
